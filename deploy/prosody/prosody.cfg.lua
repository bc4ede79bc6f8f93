-- Prosody 13 configuration for a server whose user rosters are managed by
-- roster-sidecar (an XEP-0114 external component using XEP-0356 privileged
-- roster access).
--
-- Requirements (Debian bookworm: install from bookworm-backports, see
-- deploy/install-servers.sh):
--   * prosody >= 13.0, or 0.12 (the end-to-end suite runs this file on both)
--   * prosody-modules, for mod_privilege (XEP-0356)
--   * optional: mod_roster_sidecar.lua from this directory, roster-sidecar's
--     helper (presence at once, one request per user's changes), in a
--     directory of plugin_paths (below)
--
-- Every per-site value can come from the environment, so the same file serves
-- production (systemd EnvironmentFile=) and the end-to-end tests (which start
-- Prosody on random loopback ports in a temporary directory). A name written
-- ENV_FOO reads the environment variable FOO (nil when unset). Prosody 13 wants
-- Lua globals spelled with the Lua. prefix (Lua.tonumber, Lua.error), which
-- 0.12 does not know: the "local Lua" line below gives 0.12 the same name.
--
--   PROSODY_USER_DOMAIN         the users' domain           (example.test)
--   PROSODY_USER_DOMAINS        several users' domains, separated by spaces or commas,
--                               each a VirtualHost as below (PROSODY_USER_DOMAIN alone);
--                               list them all in roster-sidecar's xmpp.user_domains
--   PROSODY_COMPONENT_DOMAIN    roster-sidecar's JID         (roster.example.test)
--   PROSODY_COMPONENT_SECRET    XEP-0114 shared secret       (unset: the component
--                               cannot authenticate; set it, ideally from a file
--                               only root and prosody can read)
--   PROSODY_COMPONENT_INTERFACE address of the component port (127.0.0.1)
--   PROSODY_COMPONENT_PORT      component port               (5347)
--   PROSODY_C2S_INTERFACE       address of the client port   (* = all)
--   PROSODY_C2S_PORT            client port                  (5222)
--   PROSODY_DATA_DIR            accounts and rosters         (/var/lib/prosody)
--   PROSODY_PID_FILE            pid file                     (/run/prosody/prosody.pid)
--   PROSODY_LOG                 log sink: a file or *console (/var/log/prosody/prosody.log)
--   PROSODY_LOG_LEVEL           debug, info, warn, error     (info)
--   PROSODY_FIREWALL_SCRIPT     the roster lock rules, deploy/prosody/roster-sidecar.pfw
--                               (/etc/prosody/roster-sidecar.pfw)
--   PROSODY_PLUGIN_PATH         the directory holding mod_roster_sidecar.lua
--                               (/usr/local/lib/prosody/modules)
--
-- Test-only relaxations (running as root, plaintext client auth, no rate
-- limits, no s2s) are NOT in this file: the tests load a small overlay,
-- e2e/testdata/prosody-e2e.cfg.lua, that sets them and then Includes this file.

-- Prosody 13: Lua is its table of Lua globals. Prosody 0.12: Lua is nil and
-- _G (seen directly there) is that table.
local Lua = Lua or _G

local user_domain = ENV_PROSODY_USER_DOMAIN or "example.test"
local user_domains = ENV_PROSODY_USER_DOMAINS or user_domain
local component_domain = ENV_PROSODY_COMPONENT_DOMAIN or "roster.example.test"

---------- Server-wide settings ----------

admins = { }

modules_enabled = {
	"roster";      -- users have rosters: the thing roster-sidecar manages
	"saslauth";    -- client authentication
	"tls";         -- STARTTLS for clients (needs certificates, below)
	"disco";       -- service discovery
	"ping";        -- XEP-0199, roster-sidecar pings the server to detect dead links
	"limits";      -- bandwidth limits for client connections
	"admin_shell"; -- 'prosodyctl shell' over a unix socket in the data directory
	"firewall";    -- prosody-modules mod_firewall: the roster lock below
}

-- The backend owns every roster: users may not edit their own (roster
-- set/remove from a client) nor send subscription stanzas (subscribe,
-- subscribed, unsubscribe, unsubscribed). roster-sidecar's privileged writes
-- are not affected. Remove "firewall" above and this line if your users may
-- manage contacts the backend does not know (a sync would remove them).
firewall_scripts = { ENV_PROSODY_FIREWALL_SCRIPT or "/etc/prosody/roster-sidecar.pfw" }

-- Where Prosody looks for modules besides its own and prosody-modules': put
-- deploy/prosody/mod_roster_sidecar.lua there. Without the file Prosody logs
-- "Unable to load module 'roster_sidecar'" and runs on; roster-sidecar then
-- works without the helper (its check command says so).
plugin_paths = { ENV_PROSODY_PLUGIN_PATH or "/usr/local/lib/prosody/modules" }

-- Where accounts and rosters live (file storage by default).
data_path = ENV_PROSODY_DATA_DIR or "/var/lib/prosody"
pidfile = ENV_PROSODY_PID_FILE or "/run/prosody/prosody.pid"

authentication = "internal_hashed"

log = {
	[ENV_PROSODY_LOG_LEVEL or "info"] = ENV_PROSODY_LOG or "/var/log/prosody/prosody.log";
}

-- Client-to-server listener.
c2s_ports = { Lua.tonumber(ENV_PROSODY_C2S_PORT) or 5222 }
c2s_interfaces = { ENV_PROSODY_C2S_INTERFACE or "*" }

-- The external component listener (XEP-0114). The protocol is PLAINTEXT
-- (a SHA-1 handshake, then unencrypted XML carrying every managed roster):
-- keep it on loopback, or on a private network you trust, never on a public
-- interface.
component_ports = { Lua.tonumber(ENV_PROSODY_COMPONENT_PORT) or 5347 }
component_interfaces = { ENV_PROSODY_COMPONENT_INTERFACE or "127.0.0.1" }

-- TLS certificates for client connections ("certs" = /etc/prosody/certs).
certificates = "certs"

---------- The users' domains ----------

-- One VirtualHost per users' domain, all alike (a loop, so that each domain
-- gets exactly these settings; write the blocks out if your domains differ).
for domain in user_domains:gmatch("[^%s,]+") do
VirtualHost (domain)
	-- mod_privilege (from prosody-modules) implements XEP-0356 for this
	-- domain. privileged_entities says which component may do what on behalf
	-- of this domain's users:
	--   roster   = "both"           read AND write every user's roster (jabber:iq:roster
	--                               get/set with to=user@domain); this is the one
	--                               roster-sidecar cannot work without
	--   message  = "outgoing"       send messages as the server (reserved for
	--                               notifications)
	--   presence = "managed_entity" receive users' presence, so the sidecar knows
	--                               who is online
	-- Privileges are per domain: every VirtualHost the sidecar serves needs
	-- them (here every domain of the loop gets them).
	--
	-- roster_sidecar (mod_roster_sidecar.lua, this directory) is roster-sidecar's
	-- optional helper: when the sidecar's writes give two online users a
	-- subscription, they see each other's presence at once (and "unavailable"
	-- when it ends), as after a subscription approval; and each user's changes
	-- are one request (one roster load and save) instead of one per item. It
	-- serves only components privileged_entities grants roster "set"/"both".
	-- Leave it out and the sidecar writes item by item, presence flowing from
	-- the contacts' next status change or login (docs/deploy-prosody.md).
	modules_enabled = { "privilege"; "roster_sidecar" }
	privileged_entities = {
		[component_domain] = {
			roster = "both";
			message = "outgoing";
			presence = "managed_entity";
		};
	}
end

---------- roster-sidecar ----------

Component (component_domain)
	component_secret = ENV_PROSODY_COMPONENT_SECRET
	-- mod_privilege must ALSO be enabled on the component itself: without it
	-- Prosody never sends the component the <privilege/> message announcing its
	-- rights, and roster-sidecar stays "not ready".
	modules_enabled = { "privilege" }
