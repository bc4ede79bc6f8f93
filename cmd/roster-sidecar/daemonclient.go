package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"roster-sidecar/admin"
	"roster-sidecar/daemon"
)

// How sync, diff and check find a running serve: they ask the admin API at
// admin.listen of their own configuration. When nothing accepts the
// connection there, no daemon runs and they connect as the component
// themselves; when something answers, it must be a serve that lets them
// in, since a connection of their own would be refused (Prosody) or would
// break the daemon's (ejabberd).

// probeTimeout bounds the first request to the admin API.
const probeTimeout = 3 * time.Second

// requestSlack is added to the daemon's admin.request_timeout for the
// client's own bound on one request.
const requestSlack = 30 * time.Second

// readyPoll is how often a client waiting for the daemon's readiness asks.
const readyPoll = 500 * time.Millisecond

// daemonClient talks to a running serve through its admin API, with the
// token or the HMAC secret of the configuration.
type daemonClient struct {
	// base is the API's URL, e.g. http://127.0.0.1:5380.
	base   string
	token  string
	secret string
	client *http.Client
	// status is what the daemon reported when it was found.
	status admin.ServerStatus
}

// daemonError is an error answer of the admin API.
type daemonError struct {
	Code    int
	Message string
}

func (e *daemonError) Error() string {
	return fmt.Sprintf("the daemon answered %d %s: %s", e.Code, http.StatusText(e.Code), e.Message)
}

// adminBaseURL is the URL of the admin API that serve listens on with
// cfg: admin.listen, an unspecified address (all interfaces) reached on
// loopback, over HTTPS when admin.tls_cert_file is set.
func adminBaseURL(cfg daemon.Config) (string, error) {
	host, port, err := net.SplitHostPort(cfg.AdminListen)
	if err != nil {
		return "", fmt.Errorf("admin.listen %q: %w", cfg.AdminListen, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	scheme := "http"
	if cfg.AdminTLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// pinnedTLS trusts exactly the certificate serve presents with cfg: the
// first one of admin.tls_cert_file, whatever names it holds (the client
// dials the listen address, which the certificate need not name).
func pinnedTLS(cfg daemon.Config) (*tls.Config, error) {
	raw, err := os.ReadFile(cfg.AdminTLSCert)
	if err != nil {
		return nil, fmt.Errorf("admin.tls_cert_file: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("admin.tls_cert_file %s holds no PEM certificate", cfg.AdminTLSCert)
	}
	leaf := block.Bytes
	if _, err := x509.ParseCertificate(leaf); err != nil {
		return nil, fmt.Errorf("admin.tls_cert_file %s: %w", cfg.AdminTLSCert, err)
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked by VerifyConnection: the daemon must
		// present the very certificate of its configuration.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 || !bytes.Equal(cs.PeerCertificates[0].Raw, leaf) {
				return errors.New("the admin API presented another certificate than admin.tls_cert_file")
			}
			return nil
		},
	}, nil
}

// findDaemon looks for a serve at the admin API of cfg. It returns the
// client and a description of the daemon when one answers; nil and why not
// when nothing accepts connections there (or with --local); an error when
// something answers that cannot be used: a second component connection
// would then be refused, or break the daemon's.
func (o *oneShot) findDaemon(ctx context.Context, cfg daemon.Config) (*daemonClient, string, error) {
	if o.local {
		return nil, "--local", nil
	}
	base, err := adminBaseURL(cfg)
	if err != nil {
		return nil, "", err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.Proxy = nil // the admin API is the daemon's, never a proxy's
	if cfg.AdminTLSCert != "" {
		if transport.TLSClientConfig, err = pinnedTLS(cfg); err != nil {
			return nil, "", err
		}
	}
	d := &daemonClient{base: base, token: cfg.AdminToken, secret: cfg.AdminHMACSecret, client: &http.Client{Transport: transport}}

	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(pctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return nil, "", err
	}
	resp, err := d.client.Do(req)
	if err != nil {
		d.close()
		if reason, none := noDaemon(err); none {
			return nil, fmt.Sprintf("no daemon answers at %s (%s)", base, reason), nil
		}
		return nil, "", fmt.Errorf("something accepts connections at admin.listen (%s) but does not answer as roster-sidecar serve: %w; "+
			"stop it, or pass --local if it is no roster-sidecar", base, err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()

	if err := d.call(pctx, http.MethodGet, "/roster_admin/status", nil, &d.status); err != nil {
		d.close()
		var de *daemonError
		switch {
		case errors.As(err, &de) && de.Code == http.StatusUnauthorized:
			return nil, "", fmt.Errorf("roster-sidecar serve at %s refused this command's credentials (%s): "+
				"give it the admin.token or admin.hmac_secret of serve's configuration, or stop serve and pass --local", base, de.Message)
		case de != nil && de.Code == http.StatusNotFound:
			return nil, "", fmt.Errorf("something answers at admin.listen (%s) but offers no /roster_admin/status: an older roster-sidecar serve? "+
				"upgrade it, or stop it and pass --local", base)
		}
		return nil, "", fmt.Errorf("asking the daemon at %s for its status: %w", base, err)
	}
	st := d.status
	if !strings.EqualFold(st.UserDomain, cfg.UserDomain) {
		d.close()
		return nil, "", fmt.Errorf("roster-sidecar serve at %s manages the users of %s, this configuration those of %s: "+
			"use serve's configuration, or pass --local", base, st.UserDomain, cfg.UserDomain)
	}
	if st.Link != nil && !strings.EqualFold(st.Link.Component, cfg.XMPPDomain) {
		d.close()
		return nil, "", fmt.Errorf("roster-sidecar serve at %s is the component %s, this configuration %s: "+
			"use serve's configuration, or pass --local", base, st.Link.Component, cfg.XMPPDomain)
	}
	what := "roster-sidecar serve at " + base
	if st.Version != "" {
		what += " (version " + st.Version + ")"
	}
	return d, what, nil
}

// noDaemon reports whether err, of a request to the admin API, means that
// nothing accepts connections there, and says it briefly.
func noDaemon(err error) (string, bool) {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		return "", false
	}
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused", true
	case errors.As(err, &netErr) && netErr.Timeout():
		return fmt.Sprintf("no connection within %s", probeTimeout), true
	}
	return op.Err.Error(), true
}

// close releases the client's idle connections.
func (d *daemonClient) close() { d.client.CloseIdleConnections() }

// requestTimeout is the client's bound on one request: the daemon's, with
// some slack for the answer to arrive.
func (d *daemonClient) requestTimeout() time.Duration {
	return time.Duration(d.status.Limits.RequestTimeoutSeconds)*time.Second + requestSlack
}

// call sends a request with the JSON body (nil for none), authenticated
// with the token or else signed with the HMAC secret, and decodes a 2xx
// answer into out. An error answer is a *daemonError.
func (d *daemonClient) call(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, d.base+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	switch {
	case d.token != "":
		req.Header.Set("Authorization", "Bearer "+d.token)
	case d.secret != "":
		// The daemon accepts each signature once: a random nonce in the
		// query makes two equal requests of one second two signatures.
		req.URL.RawQuery = "nonce=" + rand.Text()
		admin.SignRequest(req, d.secret, body, time.Now())
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e admin.ErrorResponse
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		if json.Unmarshal(raw, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(raw))
		}
		return &daemonError{Code: resp.StatusCode, Message: e.Message}
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: the daemon's answer is not the expected JSON: %w", method, path, err)
	}
	return nil
}

// waitReady waits until the daemon's /readyz answers 200, for at most
// wait.
func (d *daemonClient) waitReady(ctx context.Context, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	var last string
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := d.client.Do(req)
		if err == nil {
			var e admin.ErrorResponse
			_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = e.Message
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the daemon is not ready (%s) after --wait %s", last, wait)
		case <-time.After(readyPoll):
		}
	}
}

// batchSize is the users of one request: --batch-size, within the
// daemon's admin.max_users.
func (d *daemonClient) batchSize(flag int) int {
	return max(1, min(flag, d.status.Limits.MaxUsers))
}

// batches cuts users into requests of at most size users whose JSON body
// is at most maxBody bytes (a username too long for any body goes alone:
// the daemon refuses it).
func batches(users []string, size int, maxBody int64) [][]string {
	var out [][]string
	start, length := 0, int64(2) // []
	for i, u := range users {
		enc, _ := json.Marshal(u)
		n := int64(len(enc)) + 1 // and a comma
		if i > start && (i-start >= size || length+n > maxBody) {
			out = append(out, users[start:i])
			start, length = i, 2
		}
		length += n
	}
	if start < len(users) {
		out = append(out, users[start:])
	}
	return out
}
