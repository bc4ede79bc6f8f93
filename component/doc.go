// Package component is the sidecar's link to the XMPP server: an external
// component (XEP-0114) that stays connected (Conn.Run: reconnects with
// backoff, XEP-0199 pings), matches IQ replies to their requests (the IQ
// tracker), learns the privileges the server grants it per user domain
// (XEP-0356), and reads and writes users' rosters with them (Conn is a
// rostersync.Store). It also passes on the presence the server forwards
// under the presence privilege (PresenceListener). Between gosrc.io/xmpp and
// the server sits a filtering relay (package component/internal/relay) that
// lets through only what the library can always decode.
package component
