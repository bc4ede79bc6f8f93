package daemon

import (
	"maps"
	"slices"

	"roster-sidecar/admin"
	"roster-sidecar/rostersync"
)

// LinkStatus reports the XMPP link for GET /roster_admin/status: the mode,
// the connection, the privileges the server granted, the server helper and,
// while refreshes cannot run, what to fix (the start-up diagnostics of
// WaitReady). It holds no secret.
func (p *Parts) LinkStatus() admin.LinkStatus {
	cfg := p.Config
	st := admin.LinkStatus{
		Mode: admin.ModePrivilege, Address: cfg.XMPPAddress, Component: cfg.XMPPDomain,
		Connected: p.Conn.Connected() == nil, CompareSubscription: cfg.CompareSub,
	}
	if p.API != nil {
		st.Mode = admin.ModeEjabberdAPI
		if st.CompareSubscription == rostersync.CompareAuto {
			st.CompareSubscription = rostersync.CompareAlways // as Build sets it
		}
	}
	lastErr := p.Conn.LastError()
	if !st.Connected && lastErr != nil {
		st.Error = lastErr.Error()
	}
	grants := p.Conn.Privileges()
	for _, d := range slices.Sorted(maps.Keys(grants)) {
		g := grants[d]
		roster := g.Roster
		if roster == "" {
			roster = "none"
		}
		st.Privileges = append(st.Privileges, admin.DomainPrivileges{Domain: d, Roster: roster, Message: g.Message, Presence: g.Presence})
	}
	if p.API == nil {
		info, known := p.Conn.Helper(cfg.UserDomain)
		switch {
		case !known:
			st.Helper = admin.HelperUnknown
		case info.Helper:
			st.Helper = admin.HelperFound
		case info.Silent:
			st.Helper = admin.HelperSilent
		default:
			st.Helper = admin.HelperMissing
		}
	}
	if err := p.Syncer.Ready(); err != nil {
		var problem *LinkProblem
		switch {
		case st.Connected:
			problem = privilegeProblem(cfg, cfg.UserDomain, grants)
		case lastErr != nil:
			problem = connectProblem(cfg, lastErr)
		default:
			problem = &LinkProblem{What: "not connected to the XMPP server at " + cfg.XMPPAddress + " yet",
				Fix: "wait a moment; if it lasts, check xmpp.address and the network"}
		}
		st.Problem = &admin.Problem{What: problem.What, Fix: problem.Fix}
	}
	return st
}
