package component

import "roster-sidecar/rosterhttp"

// SyncResult is the outcome of bringing one user's roster in line with the
// backend.
type SyncResult struct {
	// User is the normalised localpart of the user.
	User string
	// Added, Updated and Removed count the roster items changed on the server.
	Added, Updated, Removed int
	// Skipped lists backend contacts that were not applied (invalid JIDs).
	Skipped []rosterhttp.Skipped
	// Err is nil when the roster now equals the backend's.
	Err error
}
