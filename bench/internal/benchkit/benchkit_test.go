package benchkit

import (
	"testing"
	"time"
)

func TestMedianWorstRatio(t *testing.T) {
	d := []time.Duration{5 * time.Second, time.Second, 3 * time.Second, 2 * time.Second}
	if got := Median(d); got != 3*time.Second {
		t.Errorf("Median(%v) = %s, want 3s (the upper middle of an even count)", d, got)
	}
	if d[0] != 5*time.Second {
		t.Errorf("Median reordered its input: %v", d)
	}
	if got := Median([]int64{7, 1, 4}); got != 4 {
		t.Errorf("Median of three = %d, want 4", got)
	}
	if got := Worst(d); got != 5*time.Second {
		t.Errorf("Worst = %s, want 5s", got)
	}
	if got := Ratio(3*time.Second, 2*time.Second); got != 1.5 {
		t.Errorf("Ratio = %v, want 1.5", got)
	}
}
