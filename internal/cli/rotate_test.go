package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/scheme"
)

// TestRequestRotation checks that a rotation request is a new annotation
// value each time, and that a missing tenant is named.
func TestRequestRotation(t *testing.T) {
	ctx := context.Background()
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tc).WithStatusSubresource(tc).Build()
	key := types.NamespacedName{Namespace: "default", Name: "demo"}
	first, err := requestRotation(ctx, c, key, kv1.AnnotationEncryptionKeyRotation)
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Millisecond)
	second, err := requestRotation(ctx, c, key, kv1.AnnotationEncryptionKeyRotation)
	if err != nil {
		t.Fatal(err)
	}
	got := &kv1.TenantCluster{}
	if err := c.Get(ctx, key, got); err != nil {
		t.Fatal(err)
	}
	if first == second || got.Annotations[kv1.AnnotationEncryptionKeyRotation] != second {
		t.Errorf("annotations %v after requests %q and %q: want the second, different from the first", got.Annotations, first, second)
	}
	if _, err := requestRotation(ctx, c, types.NamespacedName{Namespace: "default", Name: "nope"}, kv1.AnnotationEncryptionKeyRotation); err == nil || !strings.Contains(err.Error(), "default/nope does not exist") {
		t.Errorf("request for a missing tenant: %v", err)
	}

	// The operator finished the rotation: --wait returns, naming the key.
	got.Status.Encryption = kv1.TenantEncryptionStatus{Phase: kv1.EncryptionIdle, KeyName: "key2", ObservedRotation: second, SecretsRewritten: 3}
	if err := c.Status().Update(ctx, got); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := waitRotation(ctx, c, key, second, 10*time.Second, &out); err != nil || !strings.Contains(out.String(), "key key2 (3 rewritten)") {
		t.Errorf("waitRotation = %v\n%s", err, out.String())
	}
	// One still waiting times out, saying where it stands.
	err = waitRotation(ctx, c, key, "later", 1500*time.Millisecond, &out)
	if err == nil || !strings.Contains(err.Error(), "timed out") {
		t.Errorf("waitRotation for a rotation not done: %v", err)
	}
}

// TestCertRotationState checks what rotate certs --wait waits for: the
// operator's answer to the request, then a control plane whose pods carry
// the PKI Secret's current hash, all updated and available.
func TestCertRotationState(t *testing.T) {
	ctx := context.Background()
	key := types.NamespacedName{Namespace: "default", Name: "demo"}
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default"}}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: controlplane.PKISecretName("demo"), Namespace: "default"}, Data: map[string][]byte{"ca.crt": []byte("x")}}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: controlplane.DeploymentName("demo"), Namespace: "default", Generation: 2},
		Spec: appsv1.DeploymentSpec{Replicas: &one, Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{
			Annotations: map[string]string{controlplane.AnnotationPKIHash: "old"}}}}}
	c := fake.NewClientBuilder().WithScheme(scheme.New()).WithObjects(tc, secret, dep).WithStatusSubresource(tc, dep).Build()
	step := func(want bool, wantState string) {
		t.Helper()
		done, state, err := certRotationState(ctx, c, key, "r1")
		if err != nil || done != want || !strings.Contains(state, wantState) {
			t.Fatalf("certRotationState = %v, %q, %v; want %v, %q", done, state, err, want, wantState)
		}
	}
	step(false, "waiting for the operator")
	tc.Status.Certificates.ObservedRotation = "r1"
	if err := c.Status().Update(ctx, tc); err != nil {
		t.Fatal(err)
	}
	step(false, "waiting for the control plane to be given them")
	dep.Spec.Template.Annotations[controlplane.AnnotationPKIHash] = objects.HashData(secret.Data)
	if err := c.Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 2, UpdatedReplicas: 1, AvailableReplicas: 2}
	if err := c.Status().Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	step(false, "control plane rolling")
	dep.Status = appsv1.DeploymentStatus{ObservedGeneration: dep.Generation, Replicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	if err := c.Status().Update(ctx, dep); err != nil {
		t.Fatal(err)
	}
	step(true, "runs the new certificates")
}
