package resource

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// cronSchedule is a parsed standard cron expression: one bit per allowed
// value of each field, or a fixed interval for "@every".
type cronSchedule struct {
	minute, hour, dom, month, dow uint64
	every                         time.Duration
}

// cronField describes one of the five fields: its bounds and, for months
// and weekdays, the three-letter names cron accepts in place of numbers.
type cronField struct {
	name     string
	min, max int
	names    []string // names[i] stands for min+i
}

var cronFields = [5]cronField{
	{name: "minute", min: 0, max: 59},
	{name: "hour", min: 0, max: 23},
	{name: "day of month", min: 1, max: 31},
	{name: "month", min: 1, max: 12, names: []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{name: "day of week", min: 0, max: 6, names: []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// cronDescriptors are the "@" shorthands the standard parser accepts.
var cronDescriptors = map[string]string{
	"@yearly":   "0 0 1 1 *",
	"@annually": "0 0 1 1 *",
	"@monthly":  "0 0 1 * *",
	"@weekly":   "0 0 * * 0",
	"@daily":    "0 0 * * *",
	"@midnight": "0 0 * * *",
	"@hourly":   "0 * * * *",
}

// parseCronSchedule parses the schedule syntax upstream's CronJob accepts
// (the standard five fields, "@hourly"-style descriptors and "@every
// <duration>"), so that a schedule the controller could never run is
// refused at create time. A leading TZ= or CRON_TZ= is accepted here as
// the parser does; CronJob validation rejects it separately.
func parseCronSchedule(spec string) (*cronSchedule, error) {
	spec = strings.TrimSpace(spec)
	if rest, ok := cutTZPrefix(spec); ok {
		tz, expr, found := strings.Cut(rest, " ")
		if !found {
			return nil, fmt.Errorf("missing schedule after time zone %q", tz)
		}
		if _, err := time.LoadLocation(tz); err != nil {
			return nil, fmt.Errorf("provided bad location %s: %w", tz, err)
		}
		spec = strings.TrimSpace(expr)
	}
	if spec == "" {
		return nil, fmt.Errorf("empty spec string")
	}
	if strings.HasPrefix(spec, "@") {
		if d, ok := strings.CutPrefix(spec, "@every "); ok {
			every, err := time.ParseDuration(strings.TrimSpace(d))
			if err != nil {
				return nil, fmt.Errorf("failed to parse duration %s: %w", spec, err)
			}
			return &cronSchedule{every: every}, nil
		}
		expanded, ok := cronDescriptors[strings.ToLower(spec)]
		if !ok {
			return nil, fmt.Errorf("unrecognized descriptor: %s", spec)
		}
		spec = expanded
	}
	parts := strings.Fields(spec)
	if len(parts) != len(cronFields) {
		return nil, fmt.Errorf("expected exactly 5 fields, found %d: %s", len(parts), spec)
	}
	var bits [5]uint64
	for i, p := range parts {
		b, err := cronFields[i].parse(p)
		if err != nil {
			return nil, err
		}
		bits[i] = b
	}
	return &cronSchedule{minute: bits[0], hour: bits[1], dom: bits[2], month: bits[3], dow: bits[4]}, nil
}

// cutTZPrefix strips a leading "TZ=" or "CRON_TZ=".
func cutTZPrefix(spec string) (string, bool) {
	if rest, ok := strings.CutPrefix(spec, "TZ="); ok {
		return rest, true
	}
	return strings.CutPrefix(spec, "CRON_TZ=")
}

// parse turns one field ("*/15", "1-5", "mon,wed,fri") into a bit set.
func (f cronField) parse(s string) (uint64, error) {
	var bits uint64
	for _, item := range strings.Split(s, ",") {
		lo, hi, step := f.min, f.max, 1
		rng, stepStr, hasStep := strings.Cut(item, "/")
		if hasStep {
			n, err := strconv.Atoi(stepStr)
			if err != nil || n <= 0 {
				return 0, fmt.Errorf("%s: step in %q must be a positive number", f.name, item)
			}
			step = n
		}
		if rng != "*" && rng != "?" {
			a, b, isRange := strings.Cut(rng, "-")
			var err error
			if lo, err = f.value(a); err != nil {
				return 0, err
			}
			switch {
			case isRange:
				if hi, err = f.value(b); err != nil {
					return 0, err
				}
			case !hasStep:
				hi = lo
			}
			// "a/n" without an end runs to the field's maximum, as in
			// the standard parser.
			if lo > hi {
				return 0, fmt.Errorf("%s: beginning of range (%d) beyond end of range (%d): %s", f.name, lo, hi, item)
			}
		}
		for v := lo; v <= hi; v += step {
			bits |= 1 << uint(v)
		}
	}
	return bits, nil
}

// value parses a number or name and checks it against the field's bounds.
func (f cronField) value(s string) (int, error) {
	for i, n := range f.names {
		if strings.EqualFold(s, n) {
			return f.min + i, nil
		}
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%s: failed to parse %q", f.name, s)
	}
	if v < f.min || v > f.max {
		return 0, fmt.Errorf("%s: value %d out of range [%d, %d]", f.name, v, f.min, f.max)
	}
	return v, nil
}
