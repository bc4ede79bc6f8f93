package admin

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testSecret is the HMAC secret of the tests.
const testSecret = "test-secret-0123456789abcdef"

// testNow is the time of the signature tests' clock.
var testNow = time.Unix(1767225600, 0)

// newSigningServer is a server with cfg (UserDomain filled in) whose clock
// stands at testNow.
func newSigningServer(t *testing.T, cfg Config, f *fakeSyncer) *Server {
	t.Helper()
	srv := newServer(t, cfg, f)
	srv.now = func() time.Time { return testNow }
	return srv
}

// signedHeader returns the signature headers of a request, as name, value
// pairs for do.
func signedHeader(secret string, ts int64, method, target, body string) []string {
	t := strconv.FormatInt(ts, 10)
	return []string{HeaderTimestamp, t, HeaderSignature, formatSignature(sign([]byte(secret), t, method, target, []byte(body)))}
}

// docVector reads the test vector of docs/PROTOCOL.md: the "name: value"
// lines of the text block that follows the sentence naming this test.
func docVector(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile("../docs/PROTOCOL.md")
	require.NoError(t, err)
	_, after, ok := strings.Cut(string(doc), "`TestSignatureDocVector`")
	require.True(t, ok, "PROTOCOL.md does not name TestSignatureDocVector")
	_, block, ok := strings.Cut(after, "```text\n")
	require.True(t, ok, "no text block after the mention of TestSignatureDocVector")
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	v := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(block))
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		require.True(t, ok, "line %q of the test vector is not name: value", sc.Text())
		v[name] = strings.TrimSpace(value)
	}
	for _, name := range []string{"secret", "method", "target", "body", "timestamp", "body hash", "string to sign", HeaderTimestamp, HeaderSignature} {
		require.NotEmpty(t, v[name], "the test vector has no %q", name)
	}
	return v
}

// The test vector of PROTOCOL.md is what the server computes and accepts.
func TestSignatureDocVector(t *testing.T) {
	v := docVector(t)
	body := []byte(v["body"])
	sum := sha256.Sum256(body)
	assert.Equal(t, v["body hash"], hex.EncodeToString(sum[:]))
	assert.Equal(t, v["string to sign"], stringToSign(v["timestamp"], v["method"], v["target"], body))
	assert.Equal(t, v["timestamp"], v[HeaderTimestamp])
	assert.Equal(t, v[HeaderSignature], formatSignature(sign([]byte(v["secret"]), v["timestamp"], v["method"], v["target"], body)))

	ts, err := strconv.ParseInt(v["timestamp"], 10, 64)
	require.NoError(t, err)
	f := &fakeSyncer{}
	srv := newServer(t, Config{HMACSecret: v["secret"]}, f)
	srv.now = func() time.Time { return time.Unix(ts, 0) }
	r := do(t, srv, v["method"], v["target"], strings.NewReader(v["body"]),
		HeaderTimestamp, v[HeaderTimestamp], HeaderSignature, v[HeaderSignature])
	require.Equal(t, http.StatusOK, r.code, r.body)
	calls, _, _, _ := f.snapshot()
	assert.ElementsMatch(t, []string{"john", "aaron"}, calls)
}

func TestSignatureRefused(t *testing.T) {
	const body = `["john"]`
	now := testNow.Unix()
	window := int64(SignatureWindow / time.Second)
	good := signedHeader(testSecret, now, "POST", "/roster_admin/refresh", body)
	tests := []struct {
		name, method, target, body string
		header                     []string
		msg                        string
	}{
		{"no headers", "POST", "/roster_admin/refresh", body, nil,
			"missing request signature (X-Roster-Sidecar-Timestamp and X-Roster-Sidecar-Signature)"},
		{"no signature", "POST", "/roster_admin/refresh", body, good[:2], "no X-Roster-Sidecar-Signature header"},
		{"no timestamp", "POST", "/roster_admin/refresh", body, good[2:], "no X-Roster-Sidecar-Timestamp header"},
		{"wrong secret", "POST", "/roster_admin/refresh", body,
			signedHeader("another-secret-0123456789", now, "POST", "/roster_admin/refresh", body), "it does not match the request"},
		{"stale", "POST", "/roster_admin/refresh", body,
			signedHeader(testSecret, now-window-1, "POST", "/roster_admin/refresh", body), "more than 5m0s in the past"},
		{"future", "POST", "/roster_admin/refresh", body,
			signedHeader(testSecret, now+window+1, "POST", "/roster_admin/refresh", body), "more than 5m0s in the future"},
		{"body tampered", "POST", "/roster_admin/refresh", `["aaron"]`, good, "it does not match"},
		{"body added", "POST", "/roster_admin/refresh/john", "x",
			signedHeader(testSecret, now, "POST", "/roster_admin/refresh/john", ""), "it does not match"},
		{"path tampered", "POST", "/roster_admin/refresh/aaron", "",
			signedHeader(testSecret, now, "POST", "/roster_admin/refresh/john", ""), "it does not match"},
		{"path re-encoded", "GET", "/roster_admin/refresh/%6Aohn", "",
			signedHeader(testSecret, now, "GET", "/roster_admin/refresh/john", ""), "it does not match"},
		{"query tampered", "POST", "/roster_admin/refresh?n=2", body,
			signedHeader(testSecret, now, "POST", "/roster_admin/refresh?n=1", body), "it does not match"},
		{"query dropped", "POST", "/roster_admin/refresh", body,
			signedHeader(testSecret, now, "POST", "/roster_admin/refresh?n=1", body), "it does not match"},
		{"method tampered", "POST", "/roster_admin/refresh/john", "",
			signedHeader(testSecret, now, "GET", "/roster_admin/refresh/john", ""), "it does not match"},
		{"timestamp tampered", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, strconv.FormatInt(now+1, 10), HeaderSignature, good[3]}, "it does not match"},
		{"timestamp with a leading zero", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, "0" + good[1], HeaderSignature, good[3]}, "must be the Unix time in seconds"},
		{"timestamp negative", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, "-" + good[1], HeaderSignature, good[3]}, "must be the Unix time in seconds"},
		{"timestamp in milliseconds", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, good[1] + "000", HeaderSignature, good[3]}, "more than 5m0s in the future"},
		{"timestamp too long", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, "99999999999999999999", HeaderSignature, good[3]}, "must be the Unix time in seconds"},
		{"signature without version", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, good[1], HeaderSignature, strings.TrimPrefix(good[3], "v1=")}, "must be v1= followed by 64 hex digits"},
		{"signature of another version", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, good[1], HeaderSignature, "v2=" + strings.TrimPrefix(good[3], "v1=")}, "must be v1="},
		{"signature short", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, good[1], HeaderSignature, good[3][:len(good[3])-2]}, "must be v1="},
		{"signature not hex", "POST", "/roster_admin/refresh", body,
			[]string{HeaderTimestamp, good[1], HeaderSignature, good[3][:len(good[3])-1] + "g"}, "must be v1="},
		{"signature as a bearer token", "POST", "/roster_admin/refresh", body,
			[]string{"Authorization", "Bearer " + good[3]}, "missing request signature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSyncer{}
			srv := newSigningServer(t, Config{HMACSecret: testSecret}, f)
			r := do(t, srv, tt.method, tt.target, strings.NewReader(tt.body), tt.header...)
			requireError(t, r, http.StatusUnauthorized, tt.msg)
			assert.Equal(t, []string{signatureScheme}, r.header.Values("WWW-Authenticate"))
			requireNothingStarted(t, f)
		})
	}
}

func TestSignatureAccepted(t *testing.T) {
	now := testNow.Unix()
	window := int64(SignatureWindow / time.Second)
	f := &fakeSyncer{}
	srv := newSigningServer(t, Config{HMACSecret: testSecret}, f)
	for _, tt := range []struct {
		name, method, target, body string
		ts                         int64
	}{
		{"bulk", "POST", "/roster_admin/refresh", `["john"]`, now},
		{"oldest allowed", "POST", "/roster_admin/refresh", `["john"]`, now - window},
		{"newest allowed", "POST", "/roster_admin/refresh", `["john"]`, now + window},
		{"one user, GET", "GET", "/roster_admin/refresh/john", "", now},
		{"one user, POST with a body", "POST", "/roster_admin/refresh/john", `ignored`, now},
		{"percent-encoded path as sent", "GET", "/roster_admin/refresh/%6Aohn", "", now},
		{"with a query", "POST", "/roster_admin/refresh?n=1", `["john"]`, now},
		{"push", "POST", "/roster_admin/push", `{"john":{"marie@example.test":{"name":"Marie"}}}`, now},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, srv, tt.method, tt.target, strings.NewReader(tt.body),
				signedHeader(testSecret, tt.ts, tt.method, tt.target, tt.body)...)
			require.Equal(t, http.StatusOK, r.code, r.body)
		})
	}
	// The handler read the body that was signed.
	assert.Equal(t, "marie@example.test", f.pushes()["john"].Items[0].JID)

	// Upper-case hex is accepted.
	h := signedHeader(testSecret, now, "GET", "/roster_admin/refresh/aaron", "")
	h[3] = "v1=" + strings.ToUpper(strings.TrimPrefix(h[3], "v1="))
	require.Equal(t, http.StatusOK, do(t, srv, "GET", "/roster_admin/refresh/aaron", nil, h...).code)

	// The routes outside /roster_admin need no signature, and any Host is
	// served as with a token.
	for _, path := range []string{"/healthz", "/readyz", "/openapi.yaml"} {
		require.Equal(t, http.StatusOK, do(t, srv, "GET", path, nil, "Host", "sidecar.example.test:5380").code, path)
	}
}

func TestSignatureReplay(t *testing.T) {
	const body = `["john"]`
	f := &fakeSyncer{}
	srv := newSigningServer(t, Config{HMACSecret: testSecret}, f)
	h := signedHeader(testSecret, testNow.Unix(), "POST", "/roster_admin/refresh", body)
	require.Equal(t, http.StatusOK, refresh(t, srv, body, h...).code)
	r := refresh(t, srv, body, h...)
	requireError(t, r, http.StatusUnauthorized, "it was used before (a replay)")

	// Still refused near the end of the window, and in upper-case hex.
	srv.now = func() time.Time { return testNow.Add(SignatureWindow) }
	upper := append([]string(nil), h...)
	upper[3] = "v1=" + strings.ToUpper(strings.TrimPrefix(h[3], "v1="))
	requireError(t, refresh(t, srv, body, upper...), http.StatusUnauthorized, "a replay")

	// The same request made distinct by a query parameter is accepted.
	require.Equal(t, http.StatusOK, do(t, srv, "POST", "/roster_admin/refresh?n=2", strings.NewReader(body),
		signedHeader(testSecret, testNow.Unix(), "POST", "/roster_admin/refresh?n=2", body)...).code)
	calls, _, _, _ := f.snapshot()
	assert.Equal(t, []string{"john", "john"}, calls)
}

func TestSignatureHeadersGivenTwice(t *testing.T) {
	f := &fakeSyncer{}
	srv := newSigningServer(t, Config{HMACSecret: testSecret}, f)
	h := signedHeader(testSecret, testNow.Unix(), "GET", "/roster_admin/refresh/john", "")
	for _, name := range []string{HeaderTimestamp, HeaderSignature} {
		req, rec := signedRequest(t, "GET", "/roster_admin/refresh/john", "", h)
		req.Header.Add(name, req.Header.Get(name))
		srv.Handler().ServeHTTP(rec, req)
		requireError(t, response{code: rec.Code, header: rec.Header(), body: rec.Body.String()},
			http.StatusUnauthorized, "must be given once each")
	}
	requireNothingStarted(t, f)
}

// A signed request's body is read to check it, within MaxBodyBytes.
func TestSignatureBodyLimit(t *testing.T) {
	f := &fakeSyncer{}
	srv := newSigningServer(t, Config{HMACSecret: testSecret, MaxBodyBytes: 16}, f)
	body := `["` + strings.Repeat("a", 20) + `"]`
	r := refresh(t, srv, body, signedHeader(testSecret, testNow.Unix(), "POST", "/roster_admin/refresh", body)...)
	requireError(t, r, http.StatusRequestEntityTooLarge, "request body larger than 16 bytes")
	requireNothingStarted(t, f)
}

// With a token and a secret, either one suffices.
func TestSignatureOrToken(t *testing.T) {
	const token = "s3cret-token"
	const body = `["john"]`
	now := testNow.Unix()
	for _, tt := range []struct {
		name   string
		header func() []string
		code   int
		msg    string
	}{
		{"token", func() []string { return []string{"Authorization", "Bearer " + token} }, 200, ""},
		{"signature", func() []string { return signedHeader(testSecret, now, "POST", "/roster_admin/refresh", body) }, 200, ""},
		{"wrong token, valid signature", func() []string {
			return append(signedHeader(testSecret, now, "POST", "/roster_admin/refresh", body), "Authorization", "Bearer wrong")
		}, 200, ""},
		{"valid token, wrong signature", func() []string {
			return append(signedHeader("another-secret-0123456789", now, "POST", "/roster_admin/refresh", body), "Authorization", "Bearer "+token)
		}, 200, ""},
		{"neither", func() []string { return nil }, 401,
			"missing or invalid bearer token, and no request signature (X-Roster-Sidecar-Timestamp and X-Roster-Sidecar-Signature)"},
		{"wrong token", func() []string { return []string{"Authorization", "Bearer wrong"} }, 401, "missing or invalid bearer token, and no request signature"},
		{"wrong signature, no token", func() []string {
			return signedHeader("another-secret-0123456789", now, "POST", "/roster_admin/refresh", body)
		}, 401, "invalid request signature: it does not match"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSyncer{}
			srv := newSigningServer(t, Config{Token: token, HMACSecret: testSecret}, f)
			r := refresh(t, srv, body, tt.header()...)
			if tt.code == http.StatusOK {
				require.Equal(t, http.StatusOK, r.code, r.body)
				return
			}
			requireError(t, r, tt.code, tt.msg)
			assert.Equal(t, []string{"Bearer", signatureScheme}, r.header.Values("WWW-Authenticate"))
			requireNothingStarted(t, f)
		})
	}
}

// Signature headers mean nothing without a secret: the token decides.
func TestSignatureIgnoredWithoutSecret(t *testing.T) {
	const token = "s3cret-token"
	f := &fakeSyncer{}
	srv := newSigningServer(t, Config{Token: token}, f)
	r := refresh(t, srv, `["john"]`, signedHeader(testSecret, testNow.Unix(), "POST", "/roster_admin/refresh", `["john"]`)...)
	requireJSON(t, r, http.StatusUnauthorized, `{"status":"error","message":"missing or invalid bearer token"}`)
	assert.Equal(t, []string{"Bearer"}, r.header.Values("WWW-Authenticate"))
}

func TestReplayCacheIsBounded(t *testing.T) {
	c := newReplayCache(3)
	sig := func(i int) [sha256.Size]byte { return sha256.Sum256([]byte{byte(i)}) }
	for i := range 4 {
		require.NoError(t, c.add(sig(i), int64(10+i), 0))
	}
	require.Len(t, c.seen, 3)
	require.Len(t, c.order, 3)
	// sig(0), timestamp 10, was forgotten for room: it and anything signed
	// at 10 or before are refused from now on.
	require.ErrorContains(t, c.add(sig(0), 10, 0), "too many signed requests within the window")
	require.ErrorContains(t, c.add(sig(9), 9, 0), "too many signed requests")
	require.ErrorContains(t, c.add(sig(1), 11, 0), "a replay")
	require.NoError(t, c.add(sig(10), 11, 0))
	require.Len(t, c.seen, 3)

	// Signatures whose timestamps left the window are forgotten.
	require.NoError(t, c.add(sig(20), 100, 50))
	require.Len(t, c.seen, 1)
	require.Len(t, c.order, 1)
	for i := range 1000 {
		require.NoError(t, c.add(sig(1000+i), int64(200+i), int64(200+i)))
	}
	require.LessOrEqual(t, len(c.seen), 3)
}

// signedRequest builds a request with header (name, value pairs) as do
// does, and a recorder for its answer.
func signedRequest(t *testing.T, method, target, body string, header []string) (*http.Request, *httptest.ResponseRecorder) {
	t.Helper()
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	req.Host = testHost
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req, httptest.NewRecorder()
}
