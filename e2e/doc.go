// Package e2e holds the end-to-end tests of roster-sidecar: they start real
// XMPP servers (Prosody and ejabberd) from the configuration files in
// deploy/, the roster-sidecar binary, an in-process HTTP backend and real
// XMPP clients, and check that refreshes requested through the admin API
// reach the users' rosters. The servers, the sidecar process and the
// backend come from e2e/harness, which the benchmark (bench/) shares.
// Every test runs on the servers through runPerServer (runner_test.go):
// TestX/<server>/<scenario>.
//
// The tests only build with the e2e tag:
//
//	go test -tags e2e -count=1 ./e2e/
//
// The servers are "prosody" (Prosody 13: prosody and prosodyctl on PATH),
// "ejabberd" (ejabberdctl on PATH) and "prosody012" (Debian bookworm's
// Prosody 0.12.3 and its prosody-modules, unpacked in
// /opt/roster-sidecar-e2e/prosody-0.12); deploy/install-servers.sh installs
// all three. A missing server fails the run unless the environment variable
// ROSTER_SIDECAR_E2E_SKIP lists it (comma separated, e.g.
// "prosody012,ejabberd"); when CI is set, listing a server there fails the
// run instead. Other environment variables:
//
//	ROSTER_SIDECAR_E2E_BINARY  use this roster-sidecar binary instead of building one
//	ROSTER_SIDECAR_E2E_DEBUG   1: debug logging in the servers, XML console of test clients
//	ROSTER_SIDECAR_E2E_KEEP    1: keep the servers' temporary directories
//
// With the tags e2e and browser (make browser-test) TestBrowserConverseContacts
// also runs: Converse.js (e2e/browser, npm) in Debian's headless Chromium
// against the WebSocket endpoint of Prosody (with the helper) and of
// ejabberd (API mode). e2e/browser/install.sh installs both;
// ROSTER_SIDECAR_CHROMIUM names another browser binary and
// ROSTER_SIDECAR_SCREENSHOTS another directory for the screenshots
// (default e2e/browser/out).
package e2e
