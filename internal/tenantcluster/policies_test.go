package tenantcluster

import (
	"testing"
	"time"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
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

func TestQuotaState(t *testing.T) {
	tests := []struct {
		used, quota int64
		want        string
		text        string
	}{
		{0, 0, kv1.ReasonWithinQuota, "0"},
		{10 << 20, 2 << 30, kv1.ReasonWithinQuota, "10.0Mi of 2.0Gi (0%)"},
		{18 << 20, 20 << 20, kv1.ReasonQuotaNearlyExhausted, "18.0Mi of 20.0Mi (90%)"},
		{20 << 20, 20 << 20, kv1.ReasonQuotaExhausted, "20.0Mi of 20.0Mi (100%)"},
		{21 << 20, 20 << 20, kv1.ReasonQuotaExhausted, "21.0Mi of 20.0Mi (105%)"},
	}
	for _, tt := range tests {
		if got, msg := quotaState(tt.used, tt.quota); got != tt.want {
			t.Errorf("quotaState(%d, %d) = %s (%s), want %s", tt.used, tt.quota, got, msg, tt.want)
		}
		if got := usageText(tt.used, tt.quota); got != tt.text {
			t.Errorf("usageText(%d, %d) = %q, want %q", tt.used, tt.quota, got, tt.text)
		}
	}
}
