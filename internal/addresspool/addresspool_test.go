package addresspool

import "testing"

func TestFree(t *testing.T) {
	pool, err := Parse("10.199.128.0/30")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		taken []string
		want  string
	}{
		{nil, "10.199.128.1"},
		{[]string{"10.199.128.1"}, "10.199.128.2"},
		{[]string{"10.199.128.2", "192.0.2.1"}, "10.199.128.1"},
	} {
		if got, err := Free(pool, c.taken); err != nil || got != c.want {
			t.Errorf("Free(%v) = %q, %v; want %q", c.taken, got, err, c.want)
		}
	}
	if got, err := Free(pool, []string{"10.199.128.1", "10.199.128.2"}); err == nil {
		t.Errorf("a full pool gave %q", got)
	}
	if _, err := Parse("fd00::/64"); err == nil {
		t.Error("an IPv6 pool was accepted")
	}
}
