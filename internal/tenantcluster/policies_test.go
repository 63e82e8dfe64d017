package tenantcluster

import (
	"testing"
	"time"
)

func TestTenancyPolicies(t *testing.T) {
	now := time.Date(2026, 11, 22, 0, 0, 0, 0, time.UTC)
	const user = "tenant-x"
	tests := []struct {
		name string
		in   tenancyInput
		want string
	}{
		{"never checked by this process", tenancyInput{now: now, statusUser: user, desiredUser: user}, "NeverChecked"},
		{"status names another user", tenancyInput{known: true, ensuredAt: now, now: now, statusUser: "", desiredUser: user}, "UserChanged"},
		{"checked long ago", tenancyInput{known: true, ensuredAt: now.Add(-tenancyRecheck), now: now, statusUser: user, desiredUser: user}, "Stale"},
		{"checked recently", tenancyInput{known: true, ensuredAt: now.Add(-time.Minute), now: now, statusUser: user, desiredUser: user}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, msg := evaluateTenancy(tt.in); got != tt.want {
				t.Fatalf("evaluateTenancy = %q (%s), want %q", got, msg, tt.want)
			}
		})
	}
}
