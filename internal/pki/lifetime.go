package pki

import (
	"crypto/x509"
	"time"
)

// A certificate is renewed once two thirds of its life have passed, as
// cert-manager and the kubelet do: a year-long certificate four months
// before it expires, a three-minute one a minute before. The third left
// is the time every holder has to pick up the new one.
const renewNumerator, renewDenominator = 2, 3

// backdate is how far a certificate valid for validity is back-dated: the
// clock skew, but at most a quarter of a short lifetime, so minute-long
// certificates still spend most of their life ahead of them.
func backdate(validity time.Duration) time.Duration {
	return min(clockSkew, validity/4)
}

// issuedAt is when a certificate was issued: its NotBefore less the
// back-dating, which backdate's rule lets us recover from the span.
func issuedAt(cert *x509.Certificate) time.Time {
	span := cert.NotAfter.Sub(cert.NotBefore)
	if span > 5*clockSkew {
		return cert.NotBefore.Add(clockSkew)
	}
	return cert.NotBefore.Add(span / 5)
}

// Lifetime is how long a certificate was issued for, from its issue (not
// its back-dated NotBefore) to its expiry.
func Lifetime(cert *x509.Certificate) time.Duration {
	return cert.NotAfter.Sub(issuedAt(cert))
}

// RenewalTime is when a certificate is due for renewal: two thirds into
// its life.
func RenewalTime(cert *x509.Certificate) time.Time {
	return issuedAt(cert).Add(Lifetime(cert) * renewNumerator / renewDenominator)
}

// lifetimeMatches says whether cert was issued for validity, or for less
// only because the CA expires first. A tenth of slack absorbs rounding and
// clock differences; anything beyond is a changed setting, which
// reissues the certificate at once.
func lifetimeMatches(cert, ca *x509.Certificate, validity time.Duration) bool {
	if validity <= 0 {
		return true
	}
	want := validity
	if capped := ca.NotAfter.Sub(issuedAt(cert)); capped < want {
		want = capped
	}
	diff := Lifetime(cert) - want
	if diff < 0 {
		diff = -diff
	}
	return diff <= want/10
}
