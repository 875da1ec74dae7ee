package resource

import (
	"testing"
	"time"
)

func TestCronScheduleNext(t *testing.T) {
	t.Parallel()
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("no zoneinfo: %v", err)
	}
	utc := func(s string) time.Time {
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	tests := []struct {
		name, spec string
		from, want time.Time
	}{
		{"every minute", "* * * * *", utc("2024-01-01T10:00:30Z"), utc("2024-01-01T10:01:00Z")},
		{"on the minute is strictly after", "* * * * *", utc("2024-01-01T10:00:00Z"), utc("2024-01-01T10:01:00Z")},
		{"step", "*/15 * * * *", utc("2024-01-01T10:16:00Z"), utc("2024-01-01T10:30:00Z")},
		{"hourly rolls the day", "@hourly", utc("2024-01-01T23:30:00Z"), utc("2024-01-02T00:00:00Z")},
		{"weekday names", "0 9 * * mon", utc("2024-01-03T00:00:00Z"), utc("2024-01-08T09:00:00Z")},
		{"dom or dow", "0 0 13 * fri", utc("2024-01-06T00:00:00Z"), utc("2024-01-12T00:00:00Z")},
		{"leap day", "0 0 29 2 *", utc("2024-03-01T00:00:00Z"), utc("2028-02-29T00:00:00Z")},
		{"never", "0 0 30 2 *", utc("2024-01-01T00:00:00Z"), time.Time{}},
		{"yearly", "@yearly", utc("2024-06-01T00:00:00Z"), utc("2025-01-01T00:00:00Z")},
		{"every", "@every 90s", utc("2024-01-01T00:00:00.5Z"), utc("2024-01-01T00:01:30Z")},
		{"time zone", "0 9 * * *", utc("2024-01-01T15:00:00Z").In(ny), utc("2024-01-02T14:00:00Z")},
		{"spring forward gap", "30 2 * * *", time.Date(2024, 3, 10, 0, 0, 0, 0, ny), time.Date(2024, 3, 11, 2, 30, 0, 0, ny)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseCronSchedule(tt.spec)
			if err != nil {
				t.Fatalf("parse %q: %v", tt.spec, err)
			}
			if got := s.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%v) = %v, want %v", tt.from, got, tt.want)
			}
		})
	}
}
