-- Demo overlay: a throwaway loopback Prosody for `make demo`. It relaxes
-- what a demo needs (running as root, plain-text client login on loopback,
-- no federation, no certificates) and then includes the real deployment
-- file, deploy/prosody/prosody.cfg.lua, unchanged.
run_as_root = true
c2s_require_encryption = false
allow_unencrypted_plain_auth = true
limits = {}
c2s_direct_tls_ports = {}
s2s_direct_tls_ports = {}
s2s_ports = {}
modules_disabled = { "s2s"; "s2s_auth_certs"; "tls" }

Include(ENV_PROSODY_DEPLOY_CONFIG)
