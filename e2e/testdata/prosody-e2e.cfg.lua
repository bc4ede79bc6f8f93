-- Test overlay for the end-to-end tests: loopback-only, throwaway Prosody.
-- It sets the relaxations a test server needs and then includes the shared
-- deployment file, deploy/prosody/prosody.cfg.lua, unchanged: the privilege
-- configuration under test is exactly the one admins deploy.
-- Options must be set BEFORE the Include: after it the current section is the
-- Component, and a second assignment of an option is a "Duplicate option".

run_as_root = true                  -- CI runs as root, without a prosody user
c2s_require_encryption = false      -- test clients speak plain TCP on loopback
allow_unencrypted_plain_auth = true
limits = {}                         -- no configured c2s limit (mod_limits still applies its built-in 10 KiB/s, 2 s burst, per client)
c2s_direct_tls_ports = {}
s2s_direct_tls_ports = {}
s2s_ports = {}
modules_disabled = { "s2s"; "s2s_auth_certs"; "tls" } -- no federation, no certificates

Include(ENV_PROSODY_DEPLOY_CONFIG)
