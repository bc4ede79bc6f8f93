-- mod_roster_sidecar: roster-sidecar's optional helper for Prosody 13 and 0.12.
--
-- roster-sidecar (an XEP-0114 component with XEP-0356 roster privileges)
-- writes users' rosters for an application backend. What XEP-0356 grants
-- cannot do two things this module does:
--
--   * presence at once: when a write gives a user a subscription to an
--     online contact (or the contact one to the user), the subscribed side
--     receives the other's current presence, as Prosody does on a
--     subscription approval; when a subscription ends, the side that loses
--     it receives "unavailable" from the other's resources, as on a
--     cancellation;
--   * one request per user: the whole change set of one user's roster is
--     applied with one roster load and one save (mod_privilege loads and
--     saves the whole roster for every item written).
--
-- Load it on the VirtualHost of the users, next to mod_privilege (it needs no
-- change to Prosody or prosody-modules):
--
--   plugin_paths = { "/usr/local/lib/prosody/modules" } -- where this file is
--   VirtualHost "example.com"
--       modules_enabled = { "privilege"; "roster_sidecar" }
--
-- It answers only components that the VirtualHost's privileged_entities
-- grants roster "set" or "both" (the option mod_privilege reads), and
-- advertises its namespace as a disco#info feature of the host, which is how
-- roster-sidecar finds it (docs/deploy-prosody.md).
--
-- The protocol (namespace urn:xmpp:roster-sidecar:0), one user per request:
--
--   <iq type='set' id='a1' from='roster.example.com' to='example.com'>
--     <apply xmlns='urn:xmpp:roster-sidecar:0' jid='alice@example.com'>
--       <item jid='old@example.com' subscription='remove'/>
--       <item jid='bob@example.com' name='Bob' subscription='both'>
--         <group>Friends</group>
--       </item>
--     </apply>
--   </iq>
--
-- Each <item/> is a roster item as in a jabber:iq:roster set (RFC 6121 2.1),
-- applied in order; subscription 'remove' deletes it, one of none, to, from
-- or both sets it (absent: the item's current one, else none). The answer:
--
--   <iq type='result' id='a1' from='example.com' to='roster.example.com'>
--     <applied xmlns='urn:xmpp:roster-sidecar:0' changed='1' unchanged='0' failed='1'>
--       <failed jid='old@example.com' condition='item-not-found'/>
--     </applied>
--   </iq>
--
-- Every item not listed as failed is in the roster as asked. A <failed/> names
-- the item's jid as sent and an RFC 6120 stanza error condition
-- (jid-malformed, bad-request, not-allowed, item-not-found). An IQ error
-- means nothing was changed: forbidden (not a privileged component),
-- bad-request (no jid, or not a user of this host), item-not-found (no such
-- user), internal-server-error (the roster could not be saved).

local jid = require "util.jid";
local st = require "util.stanza";
local rostermanager = require "core.rostermanager";
local usermanager = require "core.usermanager";

local pairs, ipairs, select, type = pairs, ipairs, select, type;
local t_concat = table.concat;

local hosts = prosody.hosts;
local bare_sessions = prosody.bare_sessions;
local core_post_stanza = prosody.core_post_stanza;

local xmlns = "urn:xmpp:roster-sidecar:0";
local host = module.host;

module:add_feature(xmlns);

-- allowed reports whether origin is a component that privileged_entities
-- grants roster "set" or "both" on this host, read as mod_privilege reads it
-- (by the entity's bare JID). It is read at every request, so a configuration
-- reload applies at once.
local function allowed(origin)
	if origin.type ~= "component" then return false; end
	local entities = module:get_option("privileged_entities", {});
	local perms = type(entities) == "table" and entities[jid.join(origin.username, origin.host)];
	local roster = type(perms) == "table" and perms.roster;
	return roster == "set" or roster == "both";
end

local function has_to(sub) return sub == "to" or sub == "both"; end
local function has_from(sub) return sub == "from" or sub == "both"; end
local valid_subscription = { none = true, to = true, from = true, both = true };

local function same_item(a, b)
	if not a or not b then return a == b; end
	if a.name ~= b.name or a.subscription ~= b.subscription or a.ask ~= b.ask then return false; end
	for g in pairs(a.groups) do if not b.groups[g] then return false; end end
	for g in pairs(b.groups) do if not a.groups[g] then return false; end end
	return true;
end

-- available returns the sessions of a local user that are available (have
-- sent presence): the ones that receive and broadcast presence.
local function available(bare)
	local user = bare_sessions[bare];
	local list = {};
	if user then
		for _, session in pairs(user.sessions) do
			if session.presence then list[#list + 1] = session; end
		end
	end
	return list;
end

-- send_presence sends the current presence of each of sessions to the bare
-- JID to, or "unavailable" from each when unavailable is set, as mod_presence
-- does after a subscription approval or cancellation.
local function send_presence(sessions, to, unavailable)
	for _, session in ipairs(sessions) do
		local pres;
		if unavailable then
			pres = st.presence({ type = "unavailable", from = session.full_jid, to = to });
		else
			pres = st.clone(session.presence);
			pres.attr.to = to;
		end
		core_post_stanza(session, pres, true);
	end
end

-- exchange_presence does, for the changes of owner's roster, what Prosody
-- does when subscriptions are approved or cancelled. Presence flows from X to
-- Y when X's item for Y has from/both and Y's item for X has to/both (what a
-- login's probes find), so a pair whose two rosters are written one after the
-- other exchanges presence once the second agrees; a flow that starts sends
-- the sender's available presence, a flow that stops sends "unavailable"
-- from the sender's resources. For contacts on other servers only the
-- owner's side is known: the owner's presence follows the owner's item, and
-- a new to/both sends a probe from the owner's bare JID (the contact's server
-- answers as it would at login).
local function exchange_presence(owner, changes)
	local mine = available(owner);
	if #mine == 0 then return; end -- nobody to send or to receive presence
	for _, change in ipairs(changes) do
		local contact = change.jid;
		local old_sub = change.old and change.old.subscription or "none";
		local new_sub = change.new and change.new.subscription or "none";
		local contact_host = select(2, jid.split(contact));
		local h = hosts[contact_host];
		if h and h.type == "local" then
			local user = bare_sessions[contact];
			local theirs = user and user.roster and available(contact) or {};
			if #theirs > 0 then
				local back = user.roster[owner];
				local back_sub = back and back.subscription or "none";
				local before = has_from(old_sub) and has_to(back_sub);
				local after = has_from(new_sub) and has_to(back_sub);
				if after ~= before then send_presence(mine, contact, before); end
				before = has_to(old_sub) and has_from(back_sub);
				after = has_to(new_sub) and has_from(back_sub);
				if after ~= before then send_presence(theirs, owner, before); end
			end
		elseif not h or h.type == "component" then
			if has_from(new_sub) ~= has_from(old_sub) then
				send_presence(mine, contact, has_from(old_sub));
			end
			if has_to(new_sub) and not has_to(old_sub) then
				core_post_stanza(hosts[host], st.presence({ type = "probe", from = owner, to = contact }), true);
			end
		end
	end
end

-- apply_item applies one <item/> to roster and returns the change (jid, old,
-- new item) or nil and an error condition; old is recorded by the caller.
local function apply_item(owner, roster, item)
	local raw = item.attr.jid;
	local contact = raw and jid.prep(raw);
	if not contact then return nil, "jid-malformed"; end
	local node, _, resource = jid.split(contact);
	if resource then return nil, "bad-request"; end
	-- The self contact, and the name of the legacy pending table.
	if contact == owner or (not node and contact == "pending") then return nil, "not-allowed"; end
	local old = roster[contact];
	local sub = item.attr.subscription;
	if sub == "remove" then
		if not old then return nil, "item-not-found"; end
		roster[contact] = nil;
		return { jid = contact, old = old };
	end
	if sub == nil then
		sub = old and old.subscription or "none";
	elseif not valid_subscription[sub] then
		return nil, "bad-request";
	end
	local new = { subscription = sub, groups = {} };
	local name = item.attr.name;
	if name and name ~= "" then new.name = name; end
	-- As mod_privilege: a pending outgoing request stays until granted.
	if not has_to(sub) and old then new.ask = old.ask; end
	for group in item:childtags("group", xmlns) do
		local text = t_concat(group);
		if text ~= "" then new.groups[text] = true; end
	end
	if same_item(old, new) then return { jid = contact, old = old, new = old, same = true }; end
	roster[contact] = new;
	return { jid = contact, old = old, new = new };
end

module:hook("iq-set/host/" .. xmlns .. ":apply", function(event)
	local origin, stanza = event.origin, event.stanza;
	if not allowed(origin) then
		module:log("warn", "%s sent a roster-sidecar request without roster privilege on %s", origin.full_jid or origin.host or "?", host);
		origin.send(st.error_reply(stanza, "auth", "forbidden", "roster set privilege required (privileged_entities)"));
		return true;
	end
	local request = stanza.tags[1];
	local owner = request.attr.jid and jid.prep(request.attr.jid);
	local node, owner_host, resource = jid.split(owner);
	if not owner or not node or owner_host ~= host or resource then
		origin.send(st.error_reply(stanza, "modify", "bad-request", "jid must be the bare JID of a user of " .. host));
		return true;
	end
	if not usermanager.user_exists(node, host) then
		origin.send(st.error_reply(stanza, "cancel", "item-not-found", "no such user"));
		return true;
	end
	local roster, err = rostermanager.load_roster(node, host);
	if not roster or err or (roster[false] and roster[false].broken) then
		origin.send(st.error_reply(stanza, "wait", "internal-server-error", "Unable to load roster"));
		return true;
	end

	-- Apply every item in memory, keeping what each JID held first for a
	-- rollback, then save once.
	local pending = roster[false] and roster[false].pending or {};
	local first, first_pending = {}, {};
	local changes, failed = {}, {};
	local unchanged = 0;
	for _, item in ipairs(request.tags) do
		if item.name == "item" and item.attr.xmlns == xmlns then
			local contact = item.attr.jid and jid.prep(item.attr.jid);
			local before = contact and roster[contact];
			local change, condition = apply_item(owner, roster, item);
			if not change then
				failed[#failed + 1] = { jid = item.attr.jid or "", condition = condition };
			elseif change.same then
				unchanged = unchanged + 1;
			else
				if first[contact] == nil then
					first[contact] = before or false;
					first_pending[contact] = pending[contact] or false;
				end
				-- A subscription from the contact is granted: no request
				-- of the contact's is pending any more (RFC 6121 3.1.5).
				if change.new and has_from(change.new.subscription) then pending[contact] = nil; end
				changes[#changes + 1] = change;
			end
		end
	end
	if #changes > 0 then
		local ok, save_err = rostermanager.save_roster(node, host, roster);
		if not ok then
			for contact, old in pairs(first) do
				roster[contact] = old or nil;
				pending[contact] = first_pending[contact] or nil;
			end
			module:log("error", "Unable to save the roster of %s: %s", owner, save_err or "unknown error");
			origin.send(st.error_reply(stanza, "wait", "internal-server-error", "Unable to save roster"));
			return true;
		end
	end

	local reply = st.reply(stanza):tag("applied", {
		xmlns = xmlns; changed = ("%d"):format(#changes); unchanged = ("%d"):format(unchanged); failed = ("%d"):format(#failed);
	});
	for _, f in ipairs(failed) do reply:tag("failed", { jid = f.jid, condition = f.condition }):up(); end
	origin.send(reply);

	-- As mod_privilege after each write: push each changed item to the
	-- owner's interested resources (once per JID, in its final state).
	local pushed = {};
	for _, change in ipairs(changes) do
		if not pushed[change.jid] then
			pushed[change.jid] = true;
			rostermanager.roster_push(node, host, change.jid);
		end
	end

	-- Presence, from each JID's first state to its final one.
	local finals = {};
	for _, change in ipairs(changes) do
		if pushed[change.jid] then
			pushed[change.jid] = nil;
			finals[#finals + 1] = { jid = change.jid, old = first[change.jid] or nil, new = roster[change.jid] };
		end
	end
	exchange_presence(owner, finals);
	return true;
end);

module:log("debug", "roster-sidecar helper (%s) loaded on %s", xmlns, host);
