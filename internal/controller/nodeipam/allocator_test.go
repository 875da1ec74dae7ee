package nodeipam

import "testing"

func TestAllocator(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		cidr     string
		mask     int
		occupied []string
		want     []string
		full     bool
	}{
		{name: "first subnets in order", cidr: "10.42.0.0/16", mask: 24, want: []string{"10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"}},
		{name: "skips taken after restart", cidr: "10.42.0.0/16", mask: 24, occupied: []string{"10.42.0.0/24", "10.42.1.0/24"},
			want: []string{"10.42.2.0/24"}},
		{name: "ignores foreign CIDRs", cidr: "10.42.0.0/16", mask: 24, occupied: []string{"192.168.0.0/24", "10.42.0.0/25"},
			want: []string{"10.42.0.0/24"}},
		{name: "runs out", cidr: "10.42.0.0/23", mask: 24, want: []string{"10.42.0.0/24", "10.42.1.0/24"}, full: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, err := newAllocator(tc.cidr, tc.mask)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tc.occupied {
				a.occupy(o)
			}
			for _, w := range tc.want {
				got, err := a.allocate()
				if err != nil || got != w {
					t.Fatalf("allocate = %q, %v; want %q", got, err, w)
				}
			}
			if _, err := a.allocate(); (err == errFull) != tc.full {
				t.Errorf("full = %v, want %v", err == errFull, tc.full)
			}
		})
	}
	a, _ := newAllocator("10.42.0.0/16", 24)
	first, _ := a.allocate()
	a.release(first)
	if i, ok := a.index("10.42.255.0/24"); !ok || i != 255 {
		t.Errorf("index of last subnet = %d, %v", i, ok)
	}
	if again, _ := a.allocate(); again == first {
		t.Errorf("released subnet reused at once: %s", again)
	}
}
