-- Test overlay for the browser test (e2e/browser_test.go): the end-to-end
-- overlay (prosody-e2e.cfg.lua, which includes deploy/prosody/prosody.cfg.lua
-- unchanged) plus an HTTP listener on loopback serving Prosody's WebSocket
-- endpoint (XEP-0206 over RFC 7395) at /xmpp-websocket, for Converse.js.
--
-- Global HTTP options come first: after the Includes the current section is
-- the Component.

http_ports = { Lua.tonumber(ENV_PROSODY_HTTP_PORT) }
http_interfaces = { "127.0.0.1" }
https_ports = {}
https_interfaces = {}
-- Requests arrive for Host: 127.0.0.1:PORT; serve them as the users' domain.
http_default_host = ENV_PROSODY_USER_DOMAIN
-- Plain ws:// on loopback only (a real deployment terminates TLS in front).
consider_websocket_secure = true

Include(ENV_PROSODY_E2E_OVERLAY)

-- mod_websocket on the users' domain, next to deploy's mod_privilege and
-- mod_roster_sidecar. The table form sets the option without a "Duplicate
-- option" warning; it replaces the VirtualHost's list, so "privilege" and
-- "roster_sidecar" are repeated here (the test fails if the sidecar does not
-- get the roster privilege).
VirtualHost (ENV_PROSODY_USER_DOMAIN) {
	modules_enabled = { "privilege"; "roster_sidecar"; "websocket" };
}
