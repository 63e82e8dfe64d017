package pki

import (
	"testing"
	"time"
)

func TestRenewalIsTwoThirdsIntoTheLife(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCAFor("ca", now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{CommonName: "c", Client: true}
	for _, tt := range []struct {
		name         string
		validity     time.Duration
		wantLifetime time.Duration
		wantRenewal  time.Duration // after now
	}{
		{"three minutes", 3 * time.Minute, 3 * time.Minute, 2 * time.Minute},
		{"half an hour", 30 * time.Minute, 30 * time.Minute, 20 * time.Minute},
		// Capped by the CA: a leaf never outlives its issuer.
		{"beyond the CA", 24 * time.Hour, time.Hour, 40 * time.Minute},
	} {
		t.Run(tt.name, func(t *testing.T) {
			kp, err := ca.IssueFor(spec, now, tt.validity)
			if err != nil {
				t.Fatal(err)
			}
			if got := Lifetime(kp.Cert); got != tt.wantLifetime {
				t.Errorf("Lifetime = %s, want %s", got, tt.wantLifetime)
			}
			if got := RenewalTime(kp.Cert).Sub(now); got != tt.wantRenewal {
				t.Errorf("RenewalTime = now+%s, want now+%s", got, tt.wantRenewal)
			}
			if reason, msg := ca.ReissueFor(kp, spec, now.Add(tt.wantRenewal-time.Second), tt.validity); reason != "" {
				t.Errorf("just before renewal: reissue %s (%s)", reason, msg)
			}
			if reason, _ := ca.ReissueFor(kp, spec, now.Add(tt.wantRenewal), tt.validity); reason != "Expiring" {
				t.Errorf("at renewal: reason %q, want Expiring", reason)
			}
		})
	}
}

func TestChangedLifetimeReissues(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ca, err := NewCA("ca", now)
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{CommonName: "c", Client: true}
	kp, err := ca.IssueFor(spec, now, CertValidity)
	if err != nil {
		t.Fatal(err)
	}
	if reason, _ := ca.ReissueFor(kp, spec, now, 5*time.Minute); reason != "LifetimeChanged" {
		t.Fatalf("year-long certificate, five minutes asked: reason %q, want LifetimeChanged", reason)
	}
	if reason, msg := ca.ReissueFor(kp, spec, now, CertValidity); reason != "" {
		t.Fatalf("same lifetime: reissue %s (%s)", reason, msg)
	}
}
