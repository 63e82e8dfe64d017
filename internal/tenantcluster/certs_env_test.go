package tenantcluster_test

import (
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
)

// TestCertificateRotation runs leaf rotations through the reconciler and
// the real API server: one on request (the annotation), one on schedule
// (two thirds into a three-minute life). Each reissues every leaf, keeps
// the CAs, records status and an Event, and gives the control-plane
// Deployment the new PKI hash, which rolls it.
func TestCertificateRotation(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	// The API server refuses a lifetime too short to renew in time,
	// naming the field.
	short := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "short", Namespace: e.ns},
		Spec: kv1.TenantClusterSpec{Certificates: kv1.CertificatesSpec{Validity: &metav1.Duration{Duration: time.Minute}}}}
	if err := e.api.Client.Create(ctx, short); err == nil || !strings.Contains(err.Error(), "spec.certificates.validity must be at least 2m") {
		t.Fatalf("a one-minute validity: %v", err)
	}
	tc := e.tenant(t, "rot", func(tc *kv1.TenantCluster) {
		tc.Spec.Certificates.Validity = &metav1.Duration{Duration: 3 * time.Minute}
	})
	e.mustReconcile(t, tc)
	e.provision(t, tc)
	pkiData := func() map[string][]byte {
		t.Helper()
		s := &corev1.Secret{}
		if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.PKISecretName(tc.Name)}, s); err != nil {
			t.Fatal(err)
		}
		return s.Data
	}
	podHash := func() string {
		t.Helper()
		dep := &appsv1.Deployment{}
		if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: cp.DeploymentName(tc.Name)}, dep); err != nil {
			t.Fatal(err)
		}
		return dep.Spec.Template.Annotations[cp.AnnotationPKIHash]
	}
	checkRotated := func(before, after map[string][]byte) {
		t.Helper()
		for _, f := range []string{cp.FileCA, cp.FileFrontProxyCA, cp.FileSAKey} {
			if string(before[f]) != string(after[f]) {
				t.Errorf("%s changed with a leaf rotation", f)
			}
		}
		for _, f := range []string{cp.FileAPIServer, cp.FileKubeletClient, cp.FileFrontProxyClient, cp.FileDatastoreClient, cp.FileControllerManager, cp.FileScheduler, cp.FileTunnelAgent} {
			if string(before[f]) == string(after[f]) {
				t.Errorf("%s not reissued", f)
			}
		}
		if podHash() != objects.HashData(after) {
			t.Error("the control-plane Deployment does not carry the new PKI hash: its pods would keep the old certificates")
		}
		wantEvent(t, e.emitted(), "Normal "+kv1.ReasonCertificatesRotated)
	}
	first := pkiData()
	e.emitted()

	// On request.
	got := e.get(t, tc)
	patch := client.MergeFrom(got.DeepCopy())
	metav1.SetMetaDataAnnotation(&got.ObjectMeta, kv1.AnnotationCertificateRotation, "r1")
	if err := e.api.Client.Patch(ctx, got, patch); err != nil {
		t.Fatal(err)
	}
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if got.Status.Certificates.ObservedRotation != "r1" || got.Status.Certificates.LastRotationTime == nil {
		t.Fatalf("status.certificates after the request: %+v", got.Status.Certificates)
	}
	second := pkiData()
	checkRotated(first, second)
	// The request is answered once: the next reconcile keeps everything.
	e.mustReconcile(t, tc)
	if !objects.SameData(second, pkiData()) {
		t.Fatal("an answered rotation request reissued the certificates again")
	}

	// On schedule: two thirds into the three-minute life.
	if want := e.clock.Now().Add(2 * time.Minute); !got.Status.Certificates.RenewalTime.Time.Equal(want) {
		t.Errorf("status.certificates.renewalTime = %s, want %s", got.Status.Certificates.RenewalTime, want)
	}
	e.clock.SetTime(e.clock.Now().Add(2*time.Minute + time.Second))
	e.mustReconcile(t, tc)
	got = e.get(t, tc)
	if !got.Status.Certificates.LastRotationTime.Time.Equal(e.clock.Now()) {
		t.Errorf("lastRotationTime %s, want %s", got.Status.Certificates.LastRotationTime, e.clock.Now())
	}
	checkRotated(second, pkiData())
	wantCondition(t, got, kv1.ConditionCertificatesReady, metav1.ConditionTrue, kv1.ReasonCertificatesIssued)
}
