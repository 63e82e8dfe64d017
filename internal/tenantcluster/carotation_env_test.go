package tenantcluster_test

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"strings"
	"testing"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/nodeca"
	"kubinception.dev/kubinception/internal/pki"
)

// TestCARotationThroughTheReconciler runs a CA rotation against the real
// API servers: start puts both CAs in the PKI Secret and Preparing in
// status; once the control plane runs it (a tenant API server started
// from the new Secret), cluster-info carries both CAs and the rotation is
// Prepared; complete waits for a node still on the old CA, naming it,
// and goes on once the node is seen with a certificate of the new CA; the
// API server run from the completed Secret refuses the old CA's client
// certificate.
func TestCARotationThroughTheReconciler(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "carot", nil)
	_, tenant := e.ready(t, tc)
	secret := func() map[string][]byte {
		t.Helper()
		s := &corev1.Secret{}
		if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.PKISecretName(tc.Name)}, s); err != nil {
			t.Fatal(err)
		}
		return s.Data
	}
	annotate := func(value string) {
		t.Helper()
		got := e.get(t, tc)
		patch := client.MergeFrom(got.DeepCopy())
		metav1.SetMetaDataAnnotation(&got.ObjectMeta, kv1.AnnotationCARotation, value)
		if err := e.api.Client.Patch(ctx, got, patch); err != nil {
			t.Fatal(err)
		}
	}
	phase := func() *kv1.CARotationStatus {
		t.Helper()
		st := e.get(t, tc).Status.Certificates.CARotation
		if st == nil {
			t.Fatal("no status.certificates.caRotation")
		}
		return st
	}
	// The control plane rolls: a new API server from the Secret as it is.
	roll := func() {
		t.Helper()
		tenant.stop(t)
		e.setAvailable(t, tc)
		tenant = e.startTenantAPIServer(t, e.get(t, tc))
	}
	old := secret()
	e.emitted()

	annotate(kv1.CARotationStart)
	e.mustReconcile(t, tc)
	if st := phase(); st.Phase != kv1.CARotationPreparing || st.PreparingTime == nil {
		t.Fatalf("after start: %+v, want Preparing", st)
	}
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonCARotation)
	started := secret()
	if n := strings.Count(string(started[cp.FileCA]), "BEGIN CERTIFICATE"); n != 2 {
		t.Fatalf("ca.crt holds %d certificates after start, want 2", n)
	}
	// Idempotent: a second pass mints nothing.
	e.mustReconcile(t, tc)
	if string(secret()[cp.FileCAKey]) != string(started[cp.FileCAKey]) {
		t.Fatal("a second pass of start minted another CA")
	}

	roll()
	e.mustReconcile(t, tc)
	st := phase()
	if st.Phase != kv1.CARotationPrepared || st.PreparedTime == nil {
		t.Fatalf("once the control plane runs the bundles: %+v, want Prepared", st)
	}
	cm, err := tenant.Client.CoreV1().ConfigMaps("kube-public").Get(ctx, "cluster-info", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load([]byte(cm.Data["kubeconfig"]))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cfg.Clusters {
		if certs, _ := nodeca.ParseCerts(c.CertificateAuthorityData); len(certs) != 2 {
			t.Errorf("cluster-info holds %d CAs while the rotation overlaps, want 2", len(certs))
		}
	}

	// A node on the old CA holds complete.
	if _, err := tenant.Client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	if st := phase(); strings.Join(st.PendingNodes, ",") != "w1" {
		t.Fatalf("pending nodes %v, want w1", st.PendingNodes)
	}
	e.emitted()
	annotate(kv1.CARotationComplete)
	e.mustReconcile(t, tc)
	if st := phase(); st.Phase != kv1.CARotationPrepared || !strings.Contains(st.Message, "w1") {
		t.Fatalf("complete with w1 on the old CA: %+v, want Prepared and a message naming w1", st)
	}
	wantEvent(t, e.emitted(), "Warning "+kv1.ReasonCARotationWaiting)
	if _, ok := secret()[cp.FileCAPrevious]; !ok {
		t.Fatal("the old CA left the Secret while a node still uses it")
	}

	// w1 moves: an issued client certificate request of the new CA.
	newCA, err := pki.ParseKeyPair(started[cp.FileCASigning], started[cp.FileCAKey])
	if err != nil {
		t.Fatal(err)
	}
	issueNodeClient(t, ctx, tenant, newCA, "w1")
	e.mustReconcile(t, tc) // sees w1 moved
	e.mustReconcile(t, tc) // completes
	if st := phase(); st.Phase != kv1.CARotationCompleting || len(st.PendingNodes) != 0 {
		t.Fatalf("after w1 moved: %+v, want Completing", st)
	}
	done := secret()
	for _, f := range []string{cp.FileCAPrevious, cp.FileCAPreviousKey, cp.FileFrontProxyCAPrevious, cp.FileSAPubPrevious} {
		if _, ok := done[f]; ok {
			t.Errorf("%s stays after complete", f)
		}
	}
	roll()
	e.mustReconcile(t, tc)
	if st := phase(); st.Phase != kv1.CARotationCompleted || st.CompletedTime == nil {
		t.Fatalf("once the control plane runs the new CA alone: %+v, want Completed", st)
	}
	wantCondition(t, e.get(t, tc), kv1.ConditionReady, metav1.ConditionTrue, kv1.ReasonReady)

	// The operator's credential from before the rotation, of the old CA,
	// is refused by the API server that trusts the new CA alone.
	oldAdmin := tenantClientWith(t, e, tc, done[cp.FileCA], old["admin-client.crt"], old["admin-client.key"])
	if _, err := oldAdmin.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Errorf("the old CA's admin certificate after complete: %v, want Unauthorized", err)
	}
	// Once more: a completed rotation with complete asked stays as it is.
	e.mustReconcile(t, tc)
	if string(secret()[cp.FileCAKey]) != string(done[cp.FileCAKey]) {
		t.Error("a completed rotation minted another CA")
	}
}

// issueNodeClient creates, approves and issues a kubelet client
// certificate request for node, signed by ca, as the controller manager
// would.
func issueNodeClient(t *testing.T, ctx context.Context, a *tenantAPIServer, ca *pki.KeyPair, node string) {
	t.Helper()
	kp, err := ca.IssueFor(pki.Spec{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}, Client: true}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "system:node:" + node, Organization: []string{"system:nodes"}}}, kp.Key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := a.Client.CertificatesV1().CertificateSigningRequests().Create(ctx, &certv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "node-" + node},
		Spec: certv1.CertificateSigningRequestSpec{SignerName: certv1.KubeAPIServerClientKubeletSignerName,
			Request: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			Usages:  []certv1.KeyUsage{certv1.UsageDigitalSignature, certv1.UsageClientAuth}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	csr.Status.Conditions = []certv1.CertificateSigningRequestCondition{{Type: certv1.CertificateApproved, Status: corev1.ConditionTrue, Reason: "Test"}}
	if csr, err = a.Client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	csr.Status.Certificate = kp.CertPEM
	if _, err := a.Client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, csr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// tenantClientWith reaches the tenant's API server at its Service
// address trusting caPEM, with a client certificate.
func tenantClientWith(t *testing.T, e *env, tc *kv1.TenantCluster, caPEM, certPEM, keyPEM []byte) kubernetes.Interface {
	t.Helper()
	svc := &corev1.Service{}
	if err := e.api.Client.Get(context.Background(), types.NamespacedName{Namespace: e.ns, Name: cp.ServiceName(tc.Name)}, svc); err != nil {
		t.Fatal(err)
	}
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: fmt.Sprintf("https://%s:%d", svc.Spec.ClusterIP, cp.DefaultPort), Timeout: 10 * time.Second,
		TLSClientConfig: rest.TLSClientConfig{CAData: caPEM, CertData: certPEM, KeyData: keyPEM}})
	if err != nil {
		t.Fatal(err)
	}
	return cs
}
