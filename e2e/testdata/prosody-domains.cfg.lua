-- Test overlay for TestDomains (e2e/domains_test.go): the end-to-end overlay
-- (prosody-e2e.cfg.lua, which includes deploy/prosody/prosody.cfg.lua
-- unchanged, with one privileged VirtualHost per domain of
-- PROSODY_USER_DOMAINS) plus one more VirtualHost, PROSODY_UNGRANTED_DOMAIN,
-- without mod_privilege: a domain the sidecar is configured for and the
-- server hosts, but that grants the sidecar nothing.

Include(ENV_PROSODY_E2E_OVERLAY)

VirtualHost (ENV_PROSODY_UNGRANTED_DOMAIN)
