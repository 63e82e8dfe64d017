package tenantcluster_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
)

// rawSecrets reads every Secret of the tenant straight from the datastore:
// key → stored value.
func (e *env) rawSecrets(t *testing.T, tc *kv1.TenantCluster) map[string]string {
	t.Helper()
	prefix := tc.Status.Datastore.Prefix + "/registry/secrets/"
	resp, err := e.root.Get(context.Background(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, kv := range resp.Kvs {
		out[strings.TrimPrefix(string(kv.Key), prefix)] = string(kv.Value)
	}
	return out
}

// requireEncryptedWith fails unless every stored Secret begins with the
// key's prefix and holds none of the plaintexts.
func (e *env) requireEncryptedWith(t *testing.T, tc *kv1.TenantCluster, key string, plaintexts ...string) {
	t.Helper()
	raw := e.rawSecrets(t, tc)
	if len(raw) == 0 {
		t.Fatal("no Secrets in the datastore to look at")
	}
	for k, v := range raw {
		if !strings.HasPrefix(v, cp.EncryptionValuePrefix+key+":") {
			t.Errorf("Secret %s is stored as %.40q, want it encrypted with %s", k, v, key)
		}
		for _, p := range plaintexts {
			if strings.Contains(v, p) {
				t.Errorf("Secret %s is stored with %q in clear", k, p)
			}
		}
	}
}

// rollControlPlane stands in for a Deployment rollout: the tenant's API
// server restarts with the configuration the Deployment now carries, and
// the Deployment reports its replicas updated and available.
func (e *env) rollControlPlane(t *testing.T, tc *kv1.TenantCluster, old *tenantAPIServer) *tenantAPIServer {
	t.Helper()
	old.stop(t)
	a := e.startTenantAPIServer(t, e.get(t, tc))
	e.setAvailable(t, tc)
	return a
}

func (e *env) encryptionHash(t *testing.T, tc *kv1.TenantCluster) string {
	t.Helper()
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: cp.DeploymentName(tc.Name)}}
	if !e.exists(t, dep) {
		t.Fatal("no control-plane Deployment")
	}
	return dep.Spec.Template.Annotations[cp.AnnotationEncryptionHash]
}

// TestEncryptionAtRest runs a tenant's real kube-apiserver with the
// encryption configuration the operator writes: Secrets reach the
// datastore encrypted with the tenant's key; a rotation moves every
// Secret, one stored in plaintext before encryption included, to a new
// key, one rolled step at a time, and they still read back.
func TestEncryptionAtRest(t *testing.T) {
	t.Parallel()
	e := start(t)
	ctx := context.Background()
	tc := e.tenant(t, "enc", nil)
	got, tenant := e.ready(t, tc)
	wantCondition(t, got, kv1.ConditionSecretsEncrypted, metav1.ConditionTrue, kv1.ReasonEncryptionKeyCurrent)
	if st := got.Status.Encryption; st.Phase != kv1.EncryptionIdle || st.KeyName != "key1" || st.Provider != "secretbox" {
		t.Fatalf("status.encryption = %+v, want Idle with key1", st)
	}
	keySecret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: cp.EncryptionSecretName(tc.Name)}}
	if !e.exists(t, keySecret) {
		t.Fatal("no encryption Secret")
	}
	if ref := metav1.GetControllerOf(keySecret); ref == nil || ref.UID != got.UID {
		t.Errorf("the encryption Secret is not controlled by the TenantCluster: %+v", keySecret.OwnerReferences)
	}

	// A Secret goes to the datastore encrypted.
	if _, err := tenant.Client.CoreV1().Secrets("default").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s1"},
		StringData: map[string]string{"password": "hunter2-plaintext"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.requireEncryptedWith(t, got, "key1", "hunter2-plaintext")

	// A Secret stored in plaintext, as every Secret was before
	// encryption, still reads (identity is the last provider).
	legacy := fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"legacy","namespace":"default","uid":"6b3a4c1e-0000-4000-8000-00000000000a","creationTimestamp":"2026-01-01T00:00:00Z"},"data":{"k":%q},"type":"Opaque"}`,
		base64.StdEncoding.EncodeToString([]byte("legacy-plaintext")))
	if _, err := e.root.Put(ctx, got.Status.Datastore.Prefix+"/registry/secrets/default/legacy", legacy); err != nil {
		t.Fatal(err)
	}
	if s, err := tenant.Client.CoreV1().Secrets("default").Get(ctx, "legacy", metav1.GetOptions{}); err != nil || string(s.Data["k"]) != "legacy-plaintext" {
		t.Fatalf("the plaintext Secret does not read through the API: %v %v", s, err)
	}

	// Rotation, asked for with the annotation.
	e.api.Update(t, got, func() {
		got.Annotations = map[string]string{kv1.AnnotationEncryptionKeyRotation: "r1"}
	})
	steps := []struct {
		phase       kv1.EncryptionPhase
		roll        bool
		key, newKey string
	}{
		{kv1.EncryptionKeyAdded, true, "key1", "key2"},
		{kv1.EncryptionKeyPromoted, true, "key1", "key2"},
		// The rewrite runs in the reconcile that enters Rewriting.
		{kv1.EncryptionOldKeyRemoved, false, "key1", "key2"},
		{kv1.EncryptionOldKeyRemoved, true, "key1", "key2"},
		{kv1.EncryptionIdle, false, "key2", ""},
	}
	for _, step := range steps {
		hash := e.encryptionHash(t, tc)
		e.reconcile(t, tc)
		got = e.get(t, tc)
		st := got.Status.Encryption
		if st.Phase != step.phase || st.KeyName != step.key || st.NewKeyName != step.newKey {
			t.Fatalf("status.encryption = %+v, want %s key=%s new=%s", st, step.phase, step.key, step.newKey)
		}
		wantCondition(t, got, kv1.ConditionSecretsEncrypted, metav1.ConditionTrue, map[bool]string{true: kv1.ReasonEncryptionKeyCurrent, false: kv1.ReasonRotatingEncryptionKey}[step.phase == kv1.EncryptionIdle])
		if changed := e.encryptionHash(t, tc) != hash; changed != step.roll {
			t.Fatalf("in %s the pod template's encryption hash changed: %v, want %v", step.phase, changed, step.roll)
		}
		if step.roll {
			tenant = e.rollControlPlane(t, tc, tenant)
		}
	}
	wantEvent(t, e.emitted(), "Normal "+kv1.ReasonEncryptionKeyRotation)
	if got.Status.Encryption.ObservedRotation != "r1" || got.Status.Encryption.LastRotationTime == nil {
		t.Errorf("status.encryption = %+v, want r1 observed and a rotation time", got.Status.Encryption)
	}
	if got.Status.Encryption.SecretsRewritten < 2 {
		t.Errorf("secretsRewritten = %d, want at least s1 and legacy", got.Status.Encryption.SecretsRewritten)
	}
	e.requireEncryptedWith(t, got, "key2", "hunter2-plaintext", "legacy-plaintext")
	for name, want := range map[string]string{"s1": "hunter2-plaintext", "legacy": "legacy-plaintext"} {
		s, err := tenant.Client.CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatalf("Secret %s after the rotation: %v", name, err)
		}
		for _, v := range s.Data {
			if string(v) != want {
				t.Errorf("Secret %s reads %q after the rotation, want %q", name, v, want)
			}
		}
	}
	// The old key is gone from the admin cluster too.
	if err := e.api.Client.Get(ctx, types.NamespacedName{Namespace: e.ns, Name: keySecret.Name}, keySecret); err != nil {
		t.Fatal(err)
	}
	cfg := keySecret.Data[cp.FileEncryptionConfig]
	if strings.Contains(string(cfg), "key1") || !strings.Contains(string(cfg), "name: key2") {
		t.Errorf("the encryption Secret after the rotation:\n%s", cfg)
	}
}
