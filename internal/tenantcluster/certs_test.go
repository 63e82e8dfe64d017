package tenantcluster

import (
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/pki"
)

// leafFiles are the PKI Secret's leaf certificates.
var leafFiles = []string{cp.FileAPIServer, cp.FileKubeletClient, cp.FileFrontProxyClient, cp.FileTunnelAgent, cp.FileTunnelClient,
	cp.FileDatastoreClient, fileCMClient + ".crt", fileSchedClient + ".crt", fileAdminClient + ".crt"}

func TestForcedRotationReissuesEveryLeafAndKeepsTheCAs(t *testing.T) {
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	r, s := testState(t, now)
	first, err := r.desiredPKI(s, nil, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := r.desiredPKI(s, first, true, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cp.FileCA, cp.FileCAKey, cp.FileFrontProxyCA, cp.FileFrontProxyCAKey, cp.FileSAKey, cp.FileSAPub} {
		if string(rotated[f]) != string(first[f]) {
			t.Errorf("%s changed with a leaf rotation", f)
		}
	}
	for _, f := range append(leafFiles, cp.FileControllerManager, cp.FileScheduler) {
		if string(rotated[f]) == string(first[f]) {
			t.Errorf("%s was kept by a leaf rotation", f)
		}
	}
}

func TestLeavesFollowTheValiditySetting(t *testing.T) {
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	r, s := testState(t, now)
	s.tc.Spec.Certificates.Validity = &metav1.Duration{Duration: 3 * time.Minute}
	first, err := r.desiredPKI(s, nil, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range leafFiles {
		c, err := parseCert(first[f])
		if err != nil {
			t.Fatal(err)
		}
		if got := pki.Lifetime(c); got != 3*time.Minute {
			t.Errorf("%s lives %s, want 3m", f, got)
		}
	}
	// A minute later nothing is due; two minutes later everything is, and
	// the CAs stay.
	s.now = now.Add(time.Minute)
	if again, err := r.desiredPKI(s, first, false, caKeep); err != nil || string(again[cp.FileAPIServer]) != string(first[cp.FileAPIServer]) {
		t.Fatalf("a minute in: reissued (%v)", err)
	}
	s.now = now.Add(2 * time.Minute)
	renewed, err := r.desiredPKI(s, first, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range leafFiles {
		if string(renewed[f]) == string(first[f]) {
			t.Errorf("%s not renewed two thirds into its life", f)
		}
	}
	if string(renewed[cp.FileCA]) != string(first[cp.FileCA]) {
		t.Error("the CA changed with a renewal")
	}
	var st kv1.TenantCertificatesStatus
	reason, msg, err := certificatesState(s.now, &st, renewed, nil)
	if err != nil || reason != kv1.ReasonCertificatesIssued {
		t.Fatalf("certificatesState = %s (%s), %v", reason, msg, err)
	}
	if want := s.now.Add(3 * time.Minute); !st.NotAfter.Time.Equal(want) {
		t.Errorf("status notAfter %s, want %s", st.NotAfter, want)
	}
	if want := s.now.Add(2 * time.Minute); !st.RenewalTime.Time.Equal(want) {
		t.Errorf("status renewalTime %s, want %s", st.RenewalTime, want)
	}
}

// A CA is never re-minted: near its expiry it is kept and the state says
// a CA rotation is due; past it, CertificatesReady fails.
func TestCANearExpiryIsKeptAndWarns(t *testing.T) {
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	r, s := testState(t, now)
	s.tc.Spec.Certificates.CAValidity = &metav1.Duration{Duration: time.Hour}
	s.tc.Spec.Certificates.Validity = &metav1.Duration{Duration: 10 * time.Minute}
	first, err := r.desiredPKI(s, nil, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		after      time.Duration
		wantReason string
	}{
		{30 * time.Minute, kv1.ReasonCertificatesIssued},
		{45 * time.Minute, kv1.ReasonCertificateAuthorityExpiring},
		{61 * time.Minute, kv1.ReasonCertificateAuthorityExpired},
	} {
		s.now = now.Add(tt.after)
		data, err := r.desiredPKI(s, first, false, caKeep)
		if err != nil {
			t.Fatal(err)
		}
		if string(data[cp.FileCA]) != string(first[cp.FileCA]) || string(data[cp.FileFrontProxyCA]) != string(first[cp.FileFrontProxyCA]) {
			t.Fatalf("%s in: a CA was replaced", tt.after)
		}
		var st kv1.TenantCertificatesStatus
		reason, msg, err := certificatesState(s.now, &st, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		if reason != tt.wantReason {
			t.Errorf("%s in: reason %s (%s), want %s", tt.after, reason, msg, tt.wantReason)
		}
	}
	// A CA that does not parse is an error, not a new CA.
	broken := map[string][]byte{}
	for k, v := range first {
		broken[k] = v
	}
	broken[cp.FileCAKey] = []byte("garbage")
	if _, err := r.desiredPKI(s, broken, false, caKeep); err == nil {
		t.Fatal("a broken CA key was silently replaced")
	}
}

func TestCertificateTimesMetric(t *testing.T) {
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "metrics", Namespace: "ns"}}
	na, renew, ca := metav1.Unix(1000, 0), metav1.Unix(900, 0), metav1.Unix(5000, 0)
	tc.Status.Certificates = kv1.TenantCertificatesStatus{NotAfter: &na, RenewalTime: &renew, CANotAfter: &ca}
	recordCertificateTimes(tc)
	for what, want := range map[string]float64{"leaf_not_after": 1000, "leaf_renewal": 900, "ca_not_after": 5000} {
		var m dto.Metric
		if err := certificateTimes.WithLabelValues("ns", "metrics", what).Write(&m); err != nil {
			t.Fatal(err)
		}
		if got := m.GetGauge().GetValue(); got != want {
			t.Errorf("%s = %v, want %v", what, got, want)
		}
	}
	forgetCertificateTimes(tc)
	if n := certificateTimes.DeletePartialMatch(map[string]string{"tenant": "metrics"}); n != 0 {
		t.Errorf("%d series left after the tenant was forgotten", n)
	}
}
