package resource

import "time"

// CronSchedule is a parsed CronJob schedule the CronJob controller steps
// through. It shares one parser with validation, so the controller runs
// exactly the schedules the API server accepted.
type CronSchedule interface {
	// Next returns the first activation strictly after t, in t's
	// location, or the zero time if there is none within five years.
	Next(t time.Time) time.Time
}

// ParseCronSchedule parses a CronJob's spec.schedule (five fields,
// "@hourly"-style descriptors or "@every <duration>").
func ParseCronSchedule(spec string) (CronSchedule, error) {
	s, err := parseCronSchedule(spec)
	if err != nil {
		return nil, err
	}
	return s, nil
}

// cronSearchYears bounds the search for schedules that can never fire,
// such as "0 0 30 2 *".
const cronSearchYears = 5

// Next implements CronSchedule. Fields are matched from the largest unit
// down so that a non-matching month skips the whole month at once.
func (s *cronSchedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		// As the standard parser: whole seconds, at least one.
		d := max(s.every.Truncate(time.Second), time.Second)
		return t.Add(d - time.Duration(t.Nanosecond()))
	}
	loc := t.Location()
	next := time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute()+1, 0, 0, loc)
	limit := t.Year() + cronSearchYears
	for next.Year() <= limit {
		var cand time.Time
		switch {
		case !cronBit(s.month, int(next.Month())):
			cand = time.Date(next.Year(), next.Month()+1, 1, 0, 0, 0, 0, loc)
		case !s.dayMatches(next):
			cand = time.Date(next.Year(), next.Month(), next.Day()+1, 0, 0, 0, 0, loc)
		case !cronBit(s.hour, next.Hour()):
			cand = time.Date(next.Year(), next.Month(), next.Day(), next.Hour()+1, 0, 0, 0, loc)
		case !cronBit(s.minute, next.Minute()):
			cand = next.Add(time.Minute)
		default:
			return next
		}
		// Around a daylight-saving change a wall-clock step can land on
		// or before where it started; always move forward.
		if !cand.After(next) {
			cand = next.Add(time.Minute)
		}
		next = cand
	}
	return time.Time{}
}

// cronAllDom and cronAllDow are the bit sets of "*" in those fields.
const (
	cronAllDom = (1<<32 - 1) &^ 1
	cronAllDow = 1<<7 - 1
)

// dayMatches follows cron's rule: when both day fields are restricted a
// day matching either one fires; when one is "*" the other decides. A
// field listing every value counts as "*" here (the parsed bits do not
// keep the spelling), which only matters for odd spellings like "1-31".
func (s *cronSchedule) dayMatches(t time.Time) bool {
	dom := cronBit(s.dom, t.Day())
	dow := cronBit(s.dow, int(t.Weekday()))
	if s.dom == cronAllDom || s.dow == cronAllDow {
		return dom && dow
	}
	return dom || dow
}

func cronBit(bits uint64, v int) bool { return bits&(1<<uint(v)) != 0 }
