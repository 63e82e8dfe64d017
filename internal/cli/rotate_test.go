package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
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
