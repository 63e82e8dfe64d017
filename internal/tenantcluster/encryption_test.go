package tenantcluster

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
)

// mintFake makes keys whose bytes derive from their name, so a test can
// tell which key a configuration holds.
func mintFake(minted *[]string) func(string) (cp.EncryptionKey, error) {
	return func(name string) (cp.EncryptionKey, error) {
		*minted = append(*minted, name)
		return cp.EncryptionKey{Name: name, Secret: bytes.Repeat([]byte(name[len(name)-1:]), 32)}, nil
	}
}

// world is the Secret and the API servers as a rotation sees them.
type world struct {
	t       *testing.T
	st      kv1.TenantEncryptionStatus
	in      encryptionInput
	applied map[string][]byte
	minted  []string
}

// reconcile plans a step and applies it as the reconciler does: the
// Secret first, then status.
func (w *world) reconcile() encryptionPlan {
	w.t.Helper()
	plan, err := planEncryption(w.st, w.in, "demo-encryption", mintFake(&w.minted))
	if err != nil {
		w.t.Fatalf("plan from %+v: %v", w.st, err)
	}
	w.store(plan.data)
	w.st = plan.state
	return plan
}

func (w *world) store(data map[string][]byte) {
	w.t.Helper()
	keys, err := cp.ParseEncryptionConfig(data[cp.FileEncryptionConfig])
	if err != nil {
		w.t.Fatal(err)
	}
	w.applied, w.in.exists, w.in.stored = data, true, keys
}

// rollOut makes every API server run the Secret as it is.
func (w *world) rollOut(plan encryptionPlan) { w.in.running = plan.hash }

func (w *world) want(phase kv1.EncryptionPhase, key, newKey string, names ...string) {
	w.t.Helper()
	if w.st.Phase != phase || w.st.KeyName != key || w.st.NewKeyName != newKey {
		w.t.Fatalf("status %s key=%q new=%q, want %s key=%q new=%q", w.st.Phase, w.st.KeyName, w.st.NewKeyName, phase, key, newKey)
	}
	if got := w.in.stored.Names(); !slices.Equal(got, names) {
		w.t.Fatalf("in phase %s the Secret holds %v, want %v (the writing key first)", phase, got, names)
	}
}

// TestRotation walks a rotation: each step waits for every API server to
// run the step before, the write key changes only once every API server
// reads it, the old key goes only after the rewrite.
func TestRotation(t *testing.T) {
	now := metav1.NewTime(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	w := &world{t: t, in: encryptionInput{fresh: true, now: now}}

	plan := w.reconcile()
	w.want(kv1.EncryptionIdle, "key1", "", "key1")
	if plan.step == "" {
		t.Error("the first key was put in place without a step to announce")
	}
	w.rollOut(plan)
	if plan = w.reconcile(); plan.step != "" {
		t.Errorf("a reconcile with nothing to do took a step: %s", plan.step)
	}

	w.in.requested = "r1"
	plan = w.reconcile()
	w.want(kv1.EncryptionKeyAdded, "key1", "key2", "key1", "key2")
	if w.st.ObservedRotation != "r1" {
		t.Errorf("observedRotation = %q, want r1", w.st.ObservedRotation)
	}
	// Not every API server reads key2 yet: key1 keeps writing.
	w.reconcile()
	w.want(kv1.EncryptionKeyAdded, "key1", "key2", "key1", "key2")
	w.rollOut(plan)
	plan = w.reconcile()
	w.want(kv1.EncryptionKeyPromoted, "key1", "key2", "key2", "key1")
	w.reconcile()
	w.want(kv1.EncryptionKeyPromoted, "key1", "key2", "key2", "key1")
	w.rollOut(plan)
	plan = w.reconcile()
	w.want(kv1.EncryptionRewriting, "key1", "key2", "key2", "key1")
	// The rewrite phase's work: the old key may go.
	w.st.Phase = kv1.EncryptionOldKeyRemoved
	plan = w.reconcile()
	w.want(kv1.EncryptionOldKeyRemoved, "key1", "key2", "key2")
	w.rollOut(plan)
	w.reconcile()
	w.want(kv1.EncryptionIdle, "key2", "", "key2")
	if w.st.LastRotationTime == nil || !w.st.LastRotationTime.Equal(&now) {
		t.Errorf("lastRotationTime = %v, want %v", w.st.LastRotationTime, now)
	}
	if !slices.Equal(w.minted, []string{"key1", "key2"}) {
		t.Errorf("minted %v, want key1 then key2", w.minted)
	}
	// The same annotation value asks for nothing more; a new one does.
	w.reconcile()
	w.want(kv1.EncryptionIdle, "key2", "", "key2")
	w.in.requested = "r2"
	w.reconcile()
	w.want(kv1.EncryptionKeyAdded, "key2", "key3", "key2", "key3")
}

// TestEncryptionOfExistingTenant: a tenant whose API servers ran before
// encryption goes from plaintext to its first key by the same steps, so
// no API server meets a value it cannot read.
func TestEncryptionOfExistingTenant(t *testing.T) {
	w := &world{t: t, in: encryptionInput{fresh: false}}
	plan := w.reconcile()
	w.want(kv1.EncryptionKeyAdded, "", "key1", "identity", "key1")
	if ok, reason, _ := encryptionCondition(w.st); ok || reason != kv1.ReasonEncryptingSecrets {
		t.Errorf("SecretsEncrypted = %v/%s while plaintext Secrets remain", ok, reason)
	}
	w.rollOut(plan)
	plan = w.reconcile()
	w.want(kv1.EncryptionKeyPromoted, "", "key1", "key1")
	w.rollOut(plan)
	w.reconcile()
	w.want(kv1.EncryptionRewriting, "", "key1", "key1")
	w.st.Phase = kv1.EncryptionOldKeyRemoved
	plan = w.reconcile()
	w.rollOut(plan)
	w.reconcile()
	w.want(kv1.EncryptionIdle, "key1", "", "key1")
	if ok, reason, _ := encryptionCondition(w.st); !ok || reason != kv1.ReasonEncryptionKeyCurrent {
		t.Errorf("SecretsEncrypted = %v/%s once every Secret is encrypted", ok, reason)
	}
}

// TestRotationResumes replays the crashes that leave the Secret a step
// ahead of status: the plan steps back to a configuration that still
// reads every key a value may have been written with, and goes on.
func TestRotationResumes(t *testing.T) {
	t.Run("key added, status not written", func(t *testing.T) {
		w := &world{t: t, in: encryptionInput{fresh: true}}
		w.rollOut(w.reconcile())
		before := w.st
		w.in.requested = "r1"
		w.reconcile() // the Secret holds key2; status is lost
		w.st = before
		w.reconcile()
		w.want(kv1.EncryptionKeyAdded, "key1", "key2", "key1", "key2")
		if !slices.Equal(w.minted, []string{"key1", "key2"}) {
			t.Errorf("minted %v: the key the Secret already held was not taken up again", w.minted)
		}
	})
	t.Run("key promoted, status not written", func(t *testing.T) {
		w := &world{t: t, in: encryptionInput{fresh: true}}
		w.rollOut(w.reconcile())
		w.in.requested = "r1"
		w.rollOut(w.reconcile())
		before := w.st
		w.reconcile() // key2 writes; status still says KeyAdded
		w.st = before
		w.reconcile()
		// key2 may have written: it is still in the configuration.
		w.want(kv1.EncryptionKeyPromoted, "key1", "key2", "key2", "key1")
	})
	t.Run("status lost", func(t *testing.T) {
		w := &world{t: t, in: encryptionInput{fresh: true}}
		w.rollOut(w.reconcile())
		w.st = kv1.TenantEncryptionStatus{}
		w.in.fresh = false
		if plan := w.reconcile(); plan.step != "" {
			t.Errorf("adopting the Secret took a step: %s", plan.step)
		}
		w.want(kv1.EncryptionIdle, "key1", "", "key1")
	})
}

// TestEncryptionKeyMissing: a key values may be encrypted with is gone
// from the Secret; the operator refuses to mint another over it.
func TestEncryptionKeyMissing(t *testing.T) {
	for name, st := range map[string]kv1.TenantEncryptionStatus{
		"idle":      {Phase: kv1.EncryptionIdle, KeyName: "key1"},
		"rewriting": {Phase: kv1.EncryptionRewriting, KeyName: "key1", NewKeyName: "key2"},
	} {
		t.Run(name, func(t *testing.T) {
			var minted []string
			for _, in := range []encryptionInput{{exists: false, fresh: true}, {exists: true, stored: cp.EncryptionKeys{Write: &cp.EncryptionKey{Name: "key9", Secret: make([]byte, 32)}}}} {
				_, err := planEncryption(st, in, "demo-encryption", mintFake(&minted))
				var missing errEncryptionKeyMissing
				if !errors.As(err, &missing) {
					t.Errorf("plan with the Secret %+v: err %v, want the key reported missing", in, err)
				}
			}
			if len(minted) > 0 {
				t.Errorf("minted %v over a missing key", minted)
			}
		})
	}
}

// TestRolledOutHash: a rotation moves on only when every replica runs the
// new configuration, a terminating old pod included.
func TestRolledOutHash(t *testing.T) {
	two := int32(2)
	dep := func(mutate func(*appsv1.Deployment)) *appsv1.Deployment {
		d := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Generation: 3}, Spec: appsv1.DeploymentSpec{Replicas: &two}}
		d.Spec.Template.Annotations = map[string]string{cp.AnnotationEncryptionHash: "h2"}
		d.Status = appsv1.DeploymentStatus{ObservedGeneration: 3, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2}
		if mutate != nil {
			mutate(d)
		}
		return d
	}
	pod := func(hash string) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{cp.AnnotationEncryptionHash: hash}}}
	}
	for _, tc := range []struct {
		name string
		dep  *appsv1.Deployment
		pods []corev1.Pod
		want string
	}{
		{"rolled out", dep(nil), []corev1.Pod{pod("h2"), pod("h2")}, "h2"},
		{"not observed yet", dep(func(d *appsv1.Deployment) { d.Status.ObservedGeneration = 2 }), nil, ""},
		{"an old pod still counted", dep(func(d *appsv1.Deployment) { d.Status.Replicas = 3 }), nil, ""},
		{"a new pod not available", dep(func(d *appsv1.Deployment) { d.Status.AvailableReplicas = 1 }), nil, ""},
		{"an old pod still terminating", dep(nil), []corev1.Pod{pod("h2"), pod("h2"), pod("h1")}, ""},
		{"no encryption yet", dep(func(d *appsv1.Deployment) { d.Spec.Template.Annotations = nil }), nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := rolledOutHash(tc.dep, func() ([]corev1.Pod, error) { return tc.pods, nil })
			if err != nil || got != tc.want {
				t.Errorf("rolledOutHash = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestRewriteSecrets: every Secret gets a no-op update; one deleted or
// written by someone else meanwhile is not an error; only the updates the
// API server stored count; an expired continue token starts over.
func TestRewriteSecrets(t *testing.T) {
	secret := func(name string) runtime.Object {
		return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", ResourceVersion: "1"}}
	}
	cs := fake.NewClientset(secret("stale"), secret("current"), secret("gone"), secret("busy"))
	var updated []string
	cs.PrependReactor("update", "secrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
		s := a.(clienttesting.UpdateAction).GetObject().(*corev1.Secret).DeepCopy()
		updated = append(updated, s.Name)
		switch s.Name {
		case "gone":
			return true, nil, apierrors.NewNotFound(corev1.Resource("secrets"), s.Name)
		case "busy":
			return true, nil, apierrors.NewConflict(corev1.Resource("secrets"), s.Name, errors.New("modified"))
		case "stale":
			// Stored under an old key: the API server writes it again.
			s.ResourceVersion = "2"
		}
		return true, s, nil
	})
	lists := 0
	cs.PrependReactor("list", "secrets", func(a clienttesting.Action) (bool, runtime.Object, error) {
		lists++
		if a.(clienttesting.ListActionImpl).GetListOptions().Continue == "expired" {
			return true, nil, apierrors.NewResourceExpired("continue token expired")
		}
		return false, nil, nil
	})
	p := rewriteProgress{key: "key2", cont: "expired"}
	done, err := rewriteSecrets(context.Background(), cs, &p, 3)
	if err != nil || !done {
		t.Fatalf("rewriteSecrets = %v, %v; want done", done, err)
	}
	slices.Sort(updated)
	if !slices.Equal(updated, []string{"busy", "current", "gone", "stale"}) {
		t.Errorf("updated %v, want every Secret", updated)
	}
	if p.rewritten != 1 || lists != 2 {
		t.Errorf("rewritten %d in %d lists, want 1 (the stale one) in 2 (the expired token, then from the start)", p.rewritten, lists)
	}

	// A real failure stops the rewrite and says which Secret.
	cs.PrependReactor("update", "secrets", func(clienttesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewInternalError(errors.New("etcdserver: request timed out"))
	})
	if _, err := rewriteSecrets(context.Background(), cs, &rewriteProgress{}, 3); err == nil {
		t.Error("a failed update did not stop the rewrite")
	}
}
