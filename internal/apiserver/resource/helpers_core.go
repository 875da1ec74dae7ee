package resource

import (
	"fmt"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// corePtr returns a pointer to a copy of v; defaulting needs many of them.
func corePtr[T any](v T) *T { return &v }

// coreNamesErrors turns the messages of an apimachinery Is* check into
// field.Invalid errors at path, the shape upstream reports them in.
func coreNamesErrors(path *field.Path, value any, msgs []string) field.ErrorList {
	var errs field.ErrorList
	for _, m := range msgs {
		errs = append(errs, field.Invalid(path, value, m))
	}
	return errs
}

// coreNoneOr renders an empty cell the way kubectl does.
func coreNoneOr(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// coreInRange reports v outside [lo, hi] as upstream's range message.
func coreInRange(path *field.Path, v, lo, hi int64) field.ErrorList {
	if v < lo || v > hi {
		return field.ErrorList{field.Invalid(path, v, fmt.Sprintf("must be between %d and %d, inclusive", lo, hi))}
	}
	return nil
}
