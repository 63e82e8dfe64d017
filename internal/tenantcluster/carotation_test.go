package tenantcluster

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/nodeca"
	"kubinception.dev/kubinception/internal/pki"
)

func TestPlanCARotation(t *testing.T) {
	prepared := &kv1.CARotationStatus{Phase: kv1.CARotationPrepared}
	waiting := &kv1.CARotationStatus{Phase: kv1.CARotationPrepared, PendingNodes: []string{"w1", "w2"}}
	for _, tt := range []struct {
		name      string
		requested string
		st        *kv1.CARotationStatus
		overlap   bool
		action    caAction
		wait      string
	}{
		{"nothing asked", "", nil, false, caKeep, ""},
		{"first start", "start", nil, false, caStart, ""},
		{"start again while it overlaps changes nothing", "start", &kv1.CARotationStatus{Phase: kv1.CARotationPreparing}, true, caKeep, ""},
		{"start after a crash that lost status: the Secret says it started", "start", nil, true, caKeep, ""},
		{"a second rotation after a completed one", "start", &kv1.CARotationStatus{Phase: kv1.CARotationCompleted}, false, caStart, ""},
		{"start waits for the last roll of the previous one", "start", &kv1.CARotationStatus{Phase: kv1.CARotationCompleting}, false, caKeep, "still completing"},
		{"complete waits for Prepared", "complete", &kv1.CARotationStatus{Phase: kv1.CARotationPreparing}, true, caKeep, "phase Prepared"},
		{"complete with every node moved", "complete", prepared, true, caComplete, ""},
		{"complete refuses while nodes are on the old CA", "complete", waiting, true, caKeep, "w1, w2"},
		{"force-complete cuts them off", "force-complete", waiting, true, caComplete, ""},
		{"complete once done changes nothing", "complete", &kv1.CARotationStatus{Phase: kv1.CARotationCompleted}, false, caKeep, ""},
		{"an unknown value is reported", "rotate", nil, false, caKeep, "none of start"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := planCARotation(tt.requested, tt.st, tt.overlap)
			if got.action != tt.action {
				t.Errorf("action %d, want %d", got.action, tt.action)
			}
			if tt.wait == "" && got.wait != "" || !strings.Contains(got.wait, tt.wait) {
				t.Errorf("wait %q, want one containing %q", got.wait, tt.wait)
			}
		})
	}
}

// TestCARotationBundles walks the PKI Secret through start and complete:
// the bundles hold both CAs (current first) exactly while the rotation
// overlaps, what the control plane presents to itself moves at start,
// what nodes verify moves at complete, and the service-account keys
// follow the same overlap.
func TestCARotationBundles(t *testing.T) {
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	r, s := testState(t, now)
	before, err := r.desiredPKI(s, nil, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	if string(before[cp.FileCA]) != string(before[cp.FileCASigning]) || len(before[cp.FileCAPrevious]) > 0 {
		t.Fatal("without a rotation the bundle is the CA alone and there is no previous CA")
	}
	oldCA := mustCerts(t, before[cp.FileCA])[0]
	oldFront := mustCerts(t, before[cp.FileFrontProxyCA])[0]

	started, err := r.desiredPKI(s, before, false, caStart)
	if err != nil {
		t.Fatal(err)
	}
	cas := mustCerts(t, started[cp.FileCA])
	if len(cas) != 2 || !cas[1].Equal(oldCA) || cas[0].Equal(oldCA) {
		t.Fatalf("after start ca.crt holds %d CAs; want the new one first, then the old", len(cas))
	}
	if signing := mustCerts(t, started[cp.FileCASigning]); len(signing) != 1 || !signing[0].Equal(cas[0]) {
		t.Error("ca-signing.crt is not the new CA alone (the controller manager's signer refuses a bundle)")
	}
	if _, err := pki.ParseKeyPair(started[cp.FileCASigning], started[cp.FileCAKey]); err != nil {
		t.Errorf("ca.key does not belong to the new CA: %v", err)
	}
	fronts := mustCerts(t, started[cp.FileFrontProxyCA])
	if len(fronts) != 2 || !fronts[1].Equal(oldFront) {
		t.Error("front-proxy-ca.crt does not hold the new and the old front-proxy CA")
	}
	if n := strings.Count(string(started[cp.FileSAPub]), "BEGIN PUBLIC KEY"); n != 2 || !strings.HasSuffix(string(started[cp.FileSAPub]), string(before[cp.FileSAPub])) {
		t.Errorf("sa.pub holds %d keys, want the new then the old", n)
	}
	if string(started[cp.FileSAKey]) == string(before[cp.FileSAKey]) {
		t.Error("tokens are still signed with the old key")
	}
	issuedBy := func(data map[string][]byte, file string, ca *x509.Certificate) bool {
		return mustCerts(t, data[file])[0].CheckSignatureFrom(ca) == nil
	}
	for _, f := range []string{cp.FileAPIServer, cp.FileKubeletClient} {
		if !issuedBy(started, f, oldCA) {
			t.Errorf("%s moved to the new CA at start: nodes that trust only the old one would refuse it", f)
		}
	}
	for _, f := range []string{cp.FileTunnelAgent, cp.FileTunnelClient, fileCMClient + ".crt", fileSchedClient + ".crt", fileAdminClient + ".crt"} {
		if !issuedBy(started, f, cas[0]) {
			t.Errorf("%s is not reissued from the new CA at start", f)
		}
	}
	if !issuedBy(started, cp.FileFrontProxyClient, fronts[0]) {
		t.Error("the front-proxy client is not reissued from the new front-proxy CA")
	}

	// Nothing moves between the steps.
	again, err := r.desiredPKI(s, started, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	for k := range started {
		if string(again[k]) != string(started[k]) {
			t.Errorf("%s changed while the rotation overlaps and nothing was asked", k)
		}
	}

	done, err := r.desiredPKI(s, started, false, caComplete)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{cp.FileCAPrevious, cp.FileCAPreviousKey, cp.FileFrontProxyCAPrevious, cp.FileSAPubPrevious} {
		if _, ok := done[f]; ok {
			t.Errorf("%s stays after complete", f)
		}
	}
	if got := mustCerts(t, done[cp.FileCA]); len(got) != 1 || !got[0].Equal(cas[0]) {
		t.Error("after complete ca.crt is not the new CA alone")
	}
	if got := mustCerts(t, done[cp.FileFrontProxyCA]); len(got) != 1 || !got[0].Equal(fronts[0]) {
		t.Error("after complete front-proxy-ca.crt is not the new front-proxy CA alone")
	}
	if strings.Count(string(done[cp.FileSAPub]), "BEGIN PUBLIC KEY") != 1 {
		t.Error("after complete sa.pub still holds the old key")
	}
	for _, f := range append(leafFiles[:0:0], cp.FileAPIServer, cp.FileKubeletClient) {
		if !issuedBy(done, f, cas[0]) {
			t.Errorf("%s is not of the new CA after complete", f)
		}
	}
}

func TestMovedNodes(t *testing.T) {
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	oldCA, _ := pki.NewCAFor("old", now, time.Hour)
	newCA, _ := pki.NewCAFor("new", now, time.Hour)
	csr := func(ca *pki.KeyPair, cn string) certv1.CertificateSigningRequest {
		kp, err := ca.IssueFor(pki.Spec{CommonName: cn, Client: true}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return certv1.CertificateSigningRequest{Status: certv1.CertificateSigningRequestStatus{Certificate: kp.CertPEM}}
	}
	csrs := []certv1.CertificateSigningRequest{csr(newCA, "system:node:w1"), csr(oldCA, "system:node:w2"), csr(newCA, "someone"), {}}
	seen, pending := movedNodes(newCA.Cert, csrs, []string{"w3", "w2", "w1", "w4"}, []string{"w4"})
	if strings.Join(seen, ",") != "w1,w4" || strings.Join(pending, ",") != "w2,w3" {
		t.Errorf("moved %v pending %v, want moved w1,w4 (w4 seen before) and pending w2,w3", seen, pending)
	}
}

func mustCerts(t *testing.T, data []byte) []*x509.Certificate {
	t.Helper()
	certs, err := nodeca.ParseCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	return certs
}
