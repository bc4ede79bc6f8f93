-- Test overlay for Prosody without roster-sidecar's helper: the end-to-end
-- overlay (prosody-e2e.cfg.lua, which includes deploy/prosody/prosody.cfg.lua
-- unchanged) with the users' VirtualHost loading mod_privilege only, as a
-- server configured before mod_roster_sidecar existed. The table form replaces
-- the VirtualHost's modules_enabled (see prosody-web.cfg.lua).

Include(ENV_PROSODY_E2E_OVERLAY)

VirtualHost (ENV_PROSODY_USER_DOMAIN) {
	modules_enabled = { "privilege" };
}
