package kubeconfig

import (
	"crypto/x509"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"kubinception.dev/kubinception/internal/pki"
)

func TestIssueCustomer(t *testing.T) {
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	ca, err := pki.NewCA("demo-ca", now.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	got, err := IssueCustomer(CustomerRequest{ClusterName: "demo", Server: "https://10.199.0.1:30443", CA: ca, Generation: 3, TTL: 8 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	cert := got.Cert
	if want := []string{"kubinception:customer-admins:g3"}; !slices.Equal(cert.Subject.Organization, want) {
		t.Errorf("groups = %v, want %v", cert.Subject.Organization, want)
	}
	if slices.Contains(cert.Subject.Organization, "system:masters") {
		t.Errorf("a customer certificate in system:masters")
	}
	if !strings.HasPrefix(cert.Subject.CommonName, "kubinception:customer:g3:") || len(cert.Subject.CommonName) != len("kubinception:customer:g3:")+8 {
		t.Errorf("user = %q, want kubinception:customer:g3: and an 8-character id", cert.Subject.CommonName)
	}
	if !cert.NotAfter.Equal(now.Add(8 * time.Hour)) {
		t.Errorf("NotAfter = %v, want now + 8h = %v", cert.NotAfter, now.Add(8*time.Hour))
	}
	if !cert.NotBefore.Before(now) || now.Sub(cert.NotBefore) > 10*time.Minute {
		t.Errorf("NotBefore = %v: want a little before %v", cert.NotBefore, now)
	}
	if !slices.Equal(cert.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) {
		t.Errorf("usages = %v, want client auth only", cert.ExtKeyUsage)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("not a client certificate of the tenant CA: %v", err)
	}
	rc, err := clientcmd.RESTConfigFromKubeConfig(got.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	if rc.Host != "https://10.199.0.1:30443" || string(rc.CertData) != string(got.CertPEM) || string(rc.CAData) != string(ca.CertPEM) {
		t.Errorf("kubeconfig does not carry the server, CA and certificate: host %s", rc.Host)
	}
	if _, err := pki.ParseKeyPair(rc.CertData, rc.KeyData); err != nil {
		t.Errorf("kubeconfig's certificate and key: %v", err)
	}

	// Two credentials are told apart; an id given is used.
	other, err := IssueCustomer(CustomerRequest{ClusterName: "demo", Server: "https://x", CA: ca, Generation: 3, ID: "alice", TTL: time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if other.User != "kubinception:customer:g3:alice" || other.Cert.SerialNumber.Cmp(cert.SerialNumber) == 0 {
		t.Errorf("second credential: user %q, serial %v (first %v)", other.User, other.Cert.SerialNumber, cert.SerialNumber)
	}

	// A lifetime past the CA's ends with the CA.
	short, err := pki.NewCA("short", now)
	if err != nil {
		t.Fatal(err)
	}
	short.Cert.NotAfter = now.Add(time.Hour)
	capped, err := IssueCustomer(CustomerRequest{ClusterName: "demo", Server: "https://x", CA: short, Generation: 1, TTL: 24 * time.Hour, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	if !capped.Cert.NotAfter.Equal(now.Add(time.Hour)) {
		t.Errorf("NotAfter = %v, want the CA's end %v", capped.Cert.NotAfter, now.Add(time.Hour))
	}

	for _, bad := range []CustomerRequest{
		{ClusterName: "demo", Server: "https://x", CA: ca, Generation: 0, TTL: time.Hour, Now: now},
		{ClusterName: "demo", Server: "https://x", CA: ca, Generation: 1, TTL: 0, Now: now},
		{ClusterName: "demo", Server: "https://x", CA: nil, Generation: 1, TTL: time.Hour, Now: now},
		{ClusterName: "demo", Server: "", CA: ca, Generation: 1, TTL: time.Hour, Now: now},
	} {
		if _, err := IssueCustomer(bad); err == nil {
			t.Errorf("IssueCustomer(%+v) issued", bad)
		}
	}
}

func TestValidateTTL(t *testing.T) {
	for _, c := range []struct {
		ttl  time.Duration
		want string
	}{
		{DefaultCustomerTTL, ""},
		{MinCustomerTTL, ""},
		{8 * time.Hour, ""},
		{MaxCustomerTTL, ""},
		{0, "at least 1m0s"},
		{-time.Hour, "at least 1m0s"},
		{59 * time.Second, "at least 1m0s"},
		{MaxCustomerTTL + time.Second, "at most 168h0m0s"},
		{365 * 24 * time.Hour, "at most 168h0m0s"},
	} {
		err := ValidateTTL(c.ttl)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("ValidateTTL(%s) = %v, want accepted", c.ttl, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "--ttl ")):
			t.Errorf("ValidateTTL(%s) = %v, want an error naming --ttl and %q", c.ttl, err, c.want)
		}
	}
}

func TestGenerations(t *testing.T) {
	for _, c := range []struct {
		annotations map[string]string
		want        int
		bad         bool
	}{
		{nil, 1, false},
		{map[string]string{AnnotationCustomerGeneration: ""}, 1, false},
		{map[string]string{AnnotationCustomerGeneration: "7"}, 7, false},
		{map[string]string{AnnotationCustomerGeneration: "0"}, 0, true},
		{map[string]string{AnnotationCustomerGeneration: "-2"}, 0, true},
		{map[string]string{AnnotationCustomerGeneration: "three"}, 0, true},
	} {
		got, err := ParseGeneration(c.annotations, AnnotationCustomerGeneration)
		if c.bad {
			if err == nil || !strings.Contains(err.Error(), AnnotationCustomerGeneration) {
				t.Errorf("ParseGeneration(%v) = %d, %v: want an error naming the annotation", c.annotations, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("ParseGeneration(%v) = %d, %v, want %d", c.annotations, got, err, c.want)
		}
	}
	for name, want := range map[string]int{
		"kubinception:customer-admins:g1":                1,
		"kubinception:customer-admins:g12":               12,
		"kubinception:customer:g4:alice":                 4,
		"kubinception:customer:g4":                       4,
		"kubinception:customer-admins:g0":                0,
		"kubinception:customer-admins:g01":               0,
		"kubinception:customer-admins:gx":                0,
		"kubinception:customer-admins:g1:extra":          0,
		"kubernetes-admin":                               0,
		"system:masters":                                 0,
		"kubinception:customer-admins":                   0,
		"kubinception:customer:galice":                   0,
		"kubinception:customer-admins:g-1":               0,
		"kubinception:customer:g2:demo-admin-kubeconfig": 2,
	} {
		got, ok := CustomerIdentityGeneration(name)
		if ok != (want > 0) || got != want {
			t.Errorf("CustomerIdentityGeneration(%q) = %d, %v; want %d", name, got, ok, want)
		}
	}
	if CustomerGroup(5) != "kubinception:customer-admins:g5" || CustomerUser(5, "x") != "kubinception:customer:g5:x" {
		t.Errorf("names: %s, %s", CustomerGroup(5), CustomerUser(5, "x"))
	}
}

// FuzzCustomerIdentityGeneration checks that a name is read as a customer
// identity only when it is one: the generation it returns gives back the
// name's own group, or the start of its user name.
func FuzzCustomerIdentityGeneration(f *testing.F) {
	for _, s := range []string{"kubinception:customer-admins:g1", "kubinception:customer:g2:alice", "kubinception:customer:g02:x", "system:masters", "kubinception:customer-admins:g9999999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		gen, ok := CustomerIdentityGeneration(name)
		if !ok {
			if gen != 0 {
				t.Fatalf("%q: not an identity but generation %d", name, gen)
			}
			return
		}
		if gen < 1 || (name != CustomerGroup(gen) && name != CustomerUserPrefix+strconv.Itoa(gen) && !strings.HasPrefix(name, CustomerUser(gen, ""))) {
			t.Fatalf("%q read as generation %d", name, gen)
		}
	})
}
