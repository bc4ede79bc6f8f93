// Package component connects to an XMPP server as an external component
// (XEP-0114), tracks the roster privileges it was granted (XEP-0356), and
// reads, diffs and rewrites users' rosters.
package component
