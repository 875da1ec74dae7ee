// Package framework holds the scheduler's plugin interfaces and the types
// they share: the per-node view (NodeInfo), the per-attempt scratch space
// (CycleState), the result of a plugin (Status) and the Framework that
// runs a profile's plugins in order. Plugins live in ../plugins, one
// folder each; this package knows none of them.
package framework

import (
	"errors"
	"strings"
)

// Code is the outcome of a plugin call. "No node fits" is a Code, not an
// error: errors are for things that went wrong.
type Code int

// Codes, as upstream's.
const (
	// Success: the node passes, or the step succeeded.
	Success Code = iota
	// Error: an internal failure; the pod is retried after back-off.
	Error
	// Unschedulable: the pod does not fit now, but removing pods (preemption)
	// might make it fit.
	Unschedulable
	// UnschedulableAndUnresolvable: the pod does not fit and preemption
	// cannot help (a selector or taint mismatch).
	UnschedulableAndUnresolvable
	// Skip: a PreFilter or PreScore plugin has nothing to do for this pod,
	// so its Filter or Score is not called.
	Skip
)

var codeNames = []string{"Success", "Error", "Unschedulable", "UnschedulableAndUnresolvable", "Skip"}

func (c Code) String() string {
	if int(c) < len(codeNames) {
		return codeNames[c]
	}
	return "Unknown"
}

// Status is what a plugin returns. A nil *Status means Success.
type Status struct {
	code    Code
	reasons []string
	err     error
	plugin  string
}

// NewStatus makes a status with the given code and reasons.
func NewStatus(code Code, reasons ...string) *Status {
	return &Status{code: code, reasons: reasons}
}

// AsStatus wraps an internal error.
func AsStatus(err error) *Status {
	if err == nil {
		return nil
	}
	return &Status{code: Error, reasons: []string{err.Error()}, err: err}
}

// Code returns the status code; nil is Success.
func (s *Status) Code() Code {
	if s == nil {
		return Success
	}
	return s.code
}

// IsSuccess reports a nil or Success status.
func (s *Status) IsSuccess() bool { return s.Code() == Success }

// IsSkip reports a Skip status.
func (s *Status) IsSkip() bool { return s.Code() == Skip }

// IsRejected reports that the pod does not fit (either unschedulable code).
func (s *Status) IsRejected() bool {
	c := s.Code()
	return c == Unschedulable || c == UnschedulableAndUnresolvable
}

// Reasons are the human-readable reasons, each counted separately in the
// FailedScheduling message.
func (s *Status) Reasons() []string {
	if s == nil {
		return nil
	}
	return s.reasons
}

// Message joins the reasons.
func (s *Status) Message() string {
	if s == nil {
		return ""
	}
	return strings.Join(s.reasons, ", ")
}

// Plugin names the plugin that returned the status, once the Framework set it.
func (s *Status) Plugin() string {
	if s == nil {
		return ""
	}
	return s.plugin
}

// WithPlugin records which plugin returned the status.
func (s *Status) WithPlugin(name string) *Status {
	if s != nil {
		s.plugin = name
	}
	return s
}

// AsError returns the status as an error, nil for success and skip.
func (s *Status) AsError() error {
	if s.IsSuccess() || s.IsSkip() {
		return nil
	}
	if s.err != nil {
		return s.err
	}
	return errors.New(s.Message())
}
