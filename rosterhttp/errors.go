package rosterhttp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Errors of a fetch, for errors.Is and errors.As. Network errors are kept
// as net/http returns them (errors.Is(err, syscall.ECONNREFUSED), a
// *net.DNSError, a *tls.CertificateVerificationError ...).
var (
	// ErrTimeout: no complete answer within Config.Timeout.
	ErrTimeout = errors.New("no complete answer")
	// ErrTooManyRedirects: the backend redirected more than
	// Config.MaxRedirects times (at all when it is zero).
	ErrTooManyRedirects = errors.New("too many redirects")
)

// StatusError is an answer other than 200 OK.
type StatusError struct {
	// Code is the HTTP status code.
	Code int
}

func (e *StatusError) Error() string {
	return "backend answered " + strings.TrimSpace(fmt.Sprintf("%d %s", e.Code, http.StatusText(e.Code)))
}

// TooLargeError is an answer larger than Config.MaxBodyBytes.
type TooLargeError struct {
	// Limit is the largest answer accepted, in bytes.
	Limit int64
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("backend answer is larger than %d bytes", e.Limit)
}

// NotRosterError is an answer that is not a JSON object.
type NotRosterError struct {
	// Reason says what the answer is instead.
	Reason string
	// Err is the JSON decoder's error, if any.
	Err error
}

func (e *NotRosterError) Error() string {
	s := "backend answer is " + e.Reason
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *NotRosterError) Unwrap() error { return e.Err }
