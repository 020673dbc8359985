package controller

import (
	"errors"
	"fmt"
)

// Error codes. The api package maps each to one HTTP status.
const (
	ECONFLICT     = "conflict"
	EFORBIDDEN    = "forbidden"
	EINTERNAL     = "internal"
	EINVALID      = "invalid"
	ENOTFOUND     = "not_found"
	EUNAUTHORIZED = "unauthorized"
	EUNAVAILABLE  = "unavailable"
	// ESCHEMACHANGE refuses a rollback across a breaking schema change
	// that the request did not confirm.
	ESCHEMACHANGE = "schema_change"
)

// Error is an error a user can act on: its Message is safe to show, its Code
// classifies it. Anything that is not an *Error is internal.
type Error struct {
	Code    string
	Message string
	// DeploymentID names the running deployment when Code is ECONFLICT
	// because the service is busy.
	DeploymentID string
}

func (e *Error) Error() string { return e.Message }

// Errorf returns an *Error with the given code.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the first *Error in err's chain, EINTERNAL
// for any other error and "" for nil.
func ErrorCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return EINTERNAL
}

// ErrorMessage returns the user-facing message of err; internal errors are
// reduced to "internal error" so details stay in the logs.
func ErrorMessage(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Message
	}
	return "internal error"
}

// Sentinel errors the ports return; check them with errors.Is.
var (
	// ErrNotFound: the store has no such record, or the runtime no such
	// container or image.
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: a dependency (Docker engine, nginx) cannot be reached.
	ErrUnavailable = errors.New("unavailable")
	// ErrConflict: the runtime refuses because something still uses the
	// object (an image a container runs).
	ErrConflict = errors.New("conflict")
)
