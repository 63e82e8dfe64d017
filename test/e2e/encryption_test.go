package e2e

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
)

// TestEncryptionAtRest checks a tenant's Secrets in the shared datastore
// itself: ciphertext under the tenant's key, never plaintext; and a key
// rotation, through the CLI, on a tenant with two API servers while a
// client reads a Secret throughout, after which every Secret (one stored
// in plaintext before, as Secrets were before encryption, included) is
// under the new key, reads back through the API, and the old key is gone
// from the admin cluster.
func TestEncryptionAtRest(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "enc"
	t.Cleanup(func() { removeTenants(t, name) })
	if r := run(t, "create", "cluster", name, "--replicas", "2", "--kubeconfig", adminKubeconfig()); r.err != nil {
		t.Fatalf("create cluster:\n%s", r)
	}
	waitTenantReady(t, name)
	c := adminClient(t)
	diags := func() string { return encryptionState(c, name) }
	var tc *kv1.TenantCluster
	eventually(t, 3*time.Minute, "the tenant's first encryption key", func(ctx context.Context) error {
		var err error
		if tc, err = getTenant(ctx, c, name); err != nil {
			return err
		}
		if st := tc.Status.Encryption; st.Phase != kv1.EncryptionIdle || st.KeyName == "" {
			return fmt.Errorf("status.encryption %+v", st)
		}
		return nil
	}, diags)
	first := tc.Status.Encryption.KeyName
	kc := tenantKubeconfig(t, name)
	root := datastoreClient(t)
	prefix := tc.Status.Datastore.Prefix + "/registry/secrets/"

	mustTkube(t, kc, "-n", "default", "create", "secret", "generic", "before", "--from-literal=password=e2e-plaintext-before")
	raw := rawValue(t, root, prefix+"default/before")
	if !strings.HasPrefix(raw, controlplane.EncryptionValuePrefix+first+":") || strings.Contains(raw, "e2e-plaintext-before") {
		t.Fatalf("Secret default/before is stored as %.60q, want ciphertext beginning %s%s:\n%s", raw, controlplane.EncryptionValuePrefix, first, diags())
	}

	// A Secret stored in plaintext, as every Secret was before encryption
	// existed, written straight into the tenant's keys.
	legacy := fmt.Sprintf(`{"kind":"Secret","apiVersion":"v1","metadata":{"name":"legacy","namespace":"default","uid":"5d0c3e7a-0000-4000-8000-0000000000e2","creationTimestamp":"2026-01-01T00:00:00Z"},"data":{"k":%q},"type":"Opaque"}`,
		base64.StdEncoding.EncodeToString([]byte("e2e-plaintext-legacy")))
	if _, err := root.Put(t.Context(), prefix+"default/legacy", legacy); err != nil {
		t.Fatal(err)
	}
	if got := mustTkube(t, kc, "-n", "default", "get", "secret", "legacy", "-o", "jsonpath={.data.k}"); got != base64.StdEncoding.EncodeToString([]byte("e2e-plaintext-legacy")) {
		t.Fatalf("the plaintext Secret reads %q through the API", got)
	}

	// A client reads a Secret throughout the rotation: an API server that
	// cannot decrypt would answer with an error or the wrong value.
	// Connections cut by a rolling pod are counted, not failures.
	reader := startSecretReader(t, kc, "before", "password", "e2e-plaintext-before")
	start := time.Now()
	r := run(t, "rotate", "encryption-key", name, "--wait", "--timeout", "25m", "--kubeconfig", adminKubeconfig())
	reads, cut, bad := reader.stop()
	t.Logf("rotation took %s; %d reads during it, %d cut by a rolling pod\n%s", time.Since(start).Round(time.Second), reads, cut, r.stdout)
	if r.err != nil {
		t.Fatalf("rotate encryption-key:\n%s\n%s", r, diags())
	}
	if len(bad) > 0 || reads == 0 {
		t.Errorf("%d reads during the rotation; wrong answers: %q", reads, bad)
	}

	tc, err := getTenant(t.Context(), c, name)
	if err != nil {
		t.Fatal(err)
	}
	st := tc.Status.Encryption
	if st.Phase != kv1.EncryptionIdle || st.KeyName == first || st.KeyName == "" || st.LastRotationTime == nil {
		t.Fatalf("status.encryption after the rotation %+v, want Idle with a key other than %s\n%s", st, first, diags())
	}
	resp, err := root.Get(t.Context(), prefix, clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) < 2 {
		t.Fatalf("%d Secrets under %s", len(resp.Kvs), prefix)
	}
	for _, kv := range resp.Kvs {
		v := string(kv.Value)
		if !strings.HasPrefix(v, controlplane.EncryptionValuePrefix+st.KeyName+":") || strings.Contains(v, "e2e-plaintext") {
			t.Errorf("%s is stored as %.60q after the rotation, want it under %s", kv.Key, v, st.KeyName)
		}
	}
	for secret, want := range map[string]string{"before": "e2e-plaintext-before", "legacy": "e2e-plaintext-legacy"} {
		out := mustTkube(t, kc, "-n", "default", "get", "secret", secret, "-o", "go-template={{range .data}}{{.}}{{end}}")
		if got, err := base64.StdEncoding.DecodeString(out); err != nil || string(got) != want {
			t.Errorf("Secret %s reads %q after the rotation, want %q", secret, got, want)
		}
	}
	keySecret := &corev1.Secret{}
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: controlplane.EncryptionSecretName(name)}, keySecret); err != nil {
		t.Fatal(err)
	}
	if cfg := string(keySecret.Data[controlplane.FileEncryptionConfig]); strings.Contains(cfg, "name: "+first+"\n") || !strings.Contains(cfg, "name: "+st.KeyName+"\n") {
		t.Errorf("the encryption Secret after the rotation holds:\n%s", strings.ReplaceAll(cfg, "secret:", "secret (elided):"))
	}

	// Each step was announced.
	var actions []string
	var evs corev1.EventList
	if err := c.List(t.Context(), &evs, client.InNamespace("default")); err != nil {
		t.Fatal(err)
	}
	for _, ev := range evs.Items {
		if ev.InvolvedObject.Name == name && ev.Reason == kv1.ReasonEncryptionKeyRotation {
			actions = append(actions, ev.Action)
		}
	}
	for _, want := range []kv1.EncryptionPhase{kv1.EncryptionKeyAdded, kv1.EncryptionKeyPromoted, kv1.EncryptionRewriting, kv1.EncryptionOldKeyRemoved, kv1.EncryptionIdle} {
		if !slices.Contains(actions, string(want)) {
			t.Errorf("no %s Event for step %s; steps announced: %v\n%s", kv1.ReasonEncryptionKeyRotation, want, actions, diags())
			break
		}
	}

	// Only the API server containers of the running pods mount the keys.
	var pods corev1.PodList
	if err := c.List(t.Context(), &pods, client.InNamespace("default"), client.MatchingLabels(controlplane.Labels(name))); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, ctr := range append(slices.Clone(p.Spec.InitContainers), p.Spec.Containers...) {
			mounts := slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool { return m.Name == "encryption" })
			if mounts != (ctr.Name == "kube-apiserver") {
				t.Errorf("pod %s container %s mounts the encryption keys: %v", p.Name, ctr.Name, mounts)
			}
		}
	}
}

// rawValue reads one key straight from the datastore.
func rawValue(t *testing.T, root *clientv3.Client, key string) string {
	t.Helper()
	resp, err := root.Get(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) != 1 {
		t.Fatalf("%s is not in the datastore", key)
	}
	return string(resp.Kvs[0].Value)
}

// secretReader reads one Secret of a tenant every 200 ms until stopped.
type secretReader struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	reads  int
	cut    int
	bad    []string
}

func startSecretReader(t *testing.T, kubeconfig, secret, key, want string) *secretReader {
	t.Helper()
	rc, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	rc.Timeout = 10 * time.Second
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &secretReader{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ctx.Err() == nil {
			s, err := cs.CoreV1().Secrets("default").Get(ctx, secret, metav1.GetOptions{})
			r.mu.Lock()
			switch {
			case ctx.Err() != nil:
			case err != nil && (apierrors.IsInternalError(err) || apierrors.IsNotFound(err)):
				r.bad = append(r.bad, err.Error())
			case err != nil:
				r.cut++
			case string(s.Data[key]) != want:
				r.bad = append(r.bad, fmt.Sprintf("value %q", s.Data[key]))
			default:
				r.reads++
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { r.stop() })
	return r
}

// stop ends the reads and returns how many answered right, how many were
// cut off, and the wrong answers.
func (r *secretReader) stop() (reads, cut int, bad []string) {
	r.cancel()
	<-r.done
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reads, r.cut, slices.Clone(r.bad)
}

// encryptionState is what a person needs when the encryption test fails:
// the tenant's status.encryption, conditions and Events.
func encryptionState(c client.Client, name string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var b strings.Builder
	tc, err := getTenant(ctx, c, name)
	if err != nil {
		return fmt.Sprintf("tenant %s: %v\n", name, err)
	}
	fmt.Fprintf(&b, "=== status.encryption of %s\n%+v\n=== conditions\n", name, tc.Status.Encryption)
	for _, cond := range tc.Status.Conditions {
		fmt.Fprintf(&b, "%s=%s %s: %s\n", cond.Type, cond.Status, cond.Reason, cond.Message)
	}
	var evs corev1.EventList
	if err := c.List(ctx, &evs, client.InNamespace(tc.Namespace)); err == nil {
		b.WriteString("=== events of the tenant\n")
		for _, ev := range evs.Items {
			if ev.InvolvedObject.Name == name {
				when := ev.EventTime.Time
				if when.IsZero() {
					when = ev.LastTimestamp.Time
				}
				fmt.Fprintf(&b, "%s %s %s %s: %s\n", when.Format(time.RFC3339), ev.Type, ev.Reason, ev.Action, ev.Message)
			}
		}
	}
	return b.String()
}
