// Command backend is a minimal roster backend for roster-sidecar: it
// answers GET /roster/{username} with that user's entry of a JSON file
// (re-read on every request, so edits show at the next refresh). A real
// backend answers the same from its own database; see docs/PROTOCOL.md.
package main

import (
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"os"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:15381", "address to listen on")
	file := flag.String("rosters", "rosters.json", `JSON file {"user": {"contact@domain": {"name": ..., "groups": [...]}}}`)
	flag.Parse()

	srv := &http.Server{Addr: *listen, Handler: handler(*file), ReadHeaderTimeout: 5 * time.Second}
	slog.Info("example backend listening", "address", *listen, "rosters", *file)
	if err := srv.ListenAndServe(); err != nil {
		slog.Error("example backend", "error", err)
		os.Exit(1)
	}
}

// handler answers GET /roster/{user} with the user's entry of the rosters
// file, or {} for a user the file does not name.
func handler(file string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /roster/{user}", func(w http.ResponseWriter, r *http.Request) {
		user := r.PathValue("user")
		data, err := os.ReadFile(file)
		if err != nil {
			http.Error(w, "cannot read rosters", http.StatusInternalServerError)
			return
		}
		var all map[string]json.RawMessage
		if err := json.Unmarshal(data, &all); err != nil {
			http.Error(w, "rosters file is not a JSON object", http.StatusInternalServerError)
			return
		}
		roster, ok := all[user]
		if !ok {
			roster = json.RawMessage("{}") // unknown user: no contacts
		}
		slog.Info("roster requested", "user", user)
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(roster)
	})
	return mux
}
