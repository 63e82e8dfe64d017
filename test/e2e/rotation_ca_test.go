package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/join"
	"kubinception.dev/kubinception/internal/nodeca"
)

// TestCARotation rotates a tenant's CAs and service-account key with
// overlap on a tenant with two joined workers and a Deployment on them:
// start, a node joining with the old CA's hash, the two workers moved
// without re-joining, complete refused while they were not, complete,
// a node joining with the new CA's hash. The nodes stay Ready and kubectl
// logs and exec work at every step; at the end a client certificate and a
// service-account token of the old CA and key are refused.
func TestCARotation(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	const name = "carot"
	t.Cleanup(func() { removeTenants(t, name) })
	createTenants(t, name)
	waitTenantReady(t, name)
	c := adminClient(t)
	kc := tenantKubeconfig(t, name)
	diags := func() string { return caState(c, name) + controlPlaneLogs(name) + tenantState(t, kc) }
	addNodes(t, name, 2)
	nodesReady(t, kc, 2)
	testWorkloads(t, kc, 2)
	workers := nodeNames(t, kc)
	// The web pods run through the whole rotation: moving a node restarts
	// its kubelet, not its pods.
	// The web pods through a kubeconfig that trusts the cluster's CA at
	// the time (one from before the rotation trusts only the old CA).
	webPods := func(kubeconfig string) string {
		t.Helper()
		return mustTkube(t, kubeconfig, "get", "pods", "-l", "app=web", "-o", `jsonpath={range .items[*]}{.metadata.uid} {.status.containerStatuses[0].restartCount}{"\n"}{end}`)
	}
	podsBefore := webPods(kc)

	// What the old CA and key issued, kept to be refused at the end.
	oldPKI := pkiSecret(t, c, name)
	oldToken := strings.TrimSpace(mustTkube(t, kc, "-n", "default", "create", "token", "default", "--duration", "1h"))
	// Every step: the nodes Ready, logs and exec through the tunnel, and
	// the API through kubeconfig kc.
	check := func(step, kc string, nodes int) {
		t.Helper()
		nodesReady(t, kc, nodes)
		eventually(t, 2*time.Minute, "kubectl logs and exec "+step, func(ctx context.Context) error {
			if _, err := kubectlIn(ctx, kc, "", "logs", "deploy/web", "--tail=1"); err != nil {
				return err
			}
			out, err := kubectlIn(ctx, kc, "", "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", "http://127.0.0.1:8080/", "10")
			if err == nil && !strings.HasPrefix(out, "hello from web-") {
				err = fmt.Errorf("exec answered %q", out)
			}
			return err
		}, diags)
	}

	start := time.Now()
	r := run(t, "rotate", "ca", name, "start", "--wait", "--timeout", "8m", "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("rotate ca start:\n%s\n%s", r, diags())
	}
	t.Logf("rotate ca start --wait took %s:\n%s", time.Since(start).Round(time.Second), r.stdout)
	check("once Prepared", kc, 2)
	bundle := pkiSecret(t, c, name)[controlplane.FileCA]
	if n := len(mustParse(t, bundle)); n != 2 {
		t.Fatalf("ca.crt holds %d CAs once Prepared, want 2", n)
	}
	// The trust the tenant hands out carries both CAs, and a token of the
	// old key still works.
	eventually(t, 2*time.Minute, "cluster-info and kube-root-ca.crt with both CAs", func(ctx context.Context) error {
		out, err := kubectlIn(ctx, kc, "", "-n", "kube-public", "get", "configmap", "cluster-info", "-o", "jsonpath={.data.kubeconfig}")
		if err != nil {
			return err
		}
		cfg, err := clientcmd.Load([]byte(out))
		if err != nil {
			return err
		}
		for _, cl := range cfg.Clusters {
			if got := len(mustParse(t, cl.CertificateAuthorityData)); got != 2 {
				return fmt.Errorf("cluster-info holds %d CAs", got)
			}
		}
		out, err = kubectlIn(ctx, kc, "", "-n", "default", "get", "configmap", "kube-root-ca.crt", "-o", "jsonpath={.data.ca\\.crt}")
		if err != nil {
			return err
		}
		if n := strings.Count(out, "BEGIN CERTIFICATE"); n != 2 {
			return fmt.Errorf("kube-root-ca.crt holds %d CAs", n)
		}
		return nil
	}, diags)
	if out, err := tkube(t, withToken(t, kc, oldToken), "auth", "whoami"); err != nil {
		t.Errorf("a token of the old service-account key is refused while the rotation overlaps: %v %s", err, out)
	}

	// complete is refused, naming the workers still on the old CA.
	r = run(t, "rotate", "ca", name, "complete", "--kubeconfig", adminKubeconfig())
	if r.err == nil || !strings.Contains(r.stderr, workers[0]) || !strings.Contains(r.stderr, workers[1]) {
		t.Fatalf("rotate ca complete with both workers on the old CA was not refused naming them:\n%s\n%s", r, diags())
	}

	// While it overlaps: a node joins with the old CA's hash (cluster-info
	// carries both), and the two workers move, concurrently.
	oldHash, err := join.CAHash(oldPKI[controlplane.FileCA])
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	results := make([]result, 3)
	wg.Go(func() {
		jc := run(t, "join-command", name, "--kubeconfig", adminKubeconfig())
		if jc.err != nil {
			results[0] = jc
			return
		}
		token := fieldAfter(jc.stdout, "--token")
		results[0] = run(t, "node", "add", name, "--token", token, "--discovery-token-ca-cert-hash", oldHash, "--kubeconfig", adminKubeconfig(), "--root", root)
	})
	for i, w := range workers {
		wg.Go(func() {
			results[1+i] = run(t, "node", "rotate-ca", name, w, "--kubeconfig", adminKubeconfig(), "--root", root)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("step %d (join with the old CA's hash, move %v):\n%s\n%s", i, workers, r, diags())
		}
	}
	t.Logf("moving a worker:\n%s", results[1].stdout)
	check("with the workers moved", kc, 3)
	eventually(t, 2*time.Minute, "no node pending", func(ctx context.Context) error {
		tc, err := getTenant(ctx, c, name)
		if err != nil {
			return err
		}
		if st := tc.Status.Certificates.CARotation; st == nil || len(st.PendingNodes) > 0 || len(st.MovedNodes) < 3 {
			return fmt.Errorf("caRotation %+v", st)
		}
		return nil
	}, diags)

	// A kubeconfig issued now trusts both CAs and holds a new-CA
	// certificate: it goes on working after complete.
	fresh := tenantKubeconfig(t, name)
	start = time.Now()
	r = run(t, "rotate", "ca", name, "complete", "--wait", "--timeout", "8m", "--kubeconfig", adminKubeconfig())
	if r.err != nil {
		t.Fatalf("rotate ca complete:\n%s\n%s", r, diags())
	}
	t.Logf("rotate ca complete --wait took %s:\n%s", time.Since(start).Round(time.Second), r.stdout)
	check("once Completed", fresh, 3)
	if n := len(mustParse(t, pkiSecret(t, c, name)[controlplane.FileCA])); n != 1 {
		t.Errorf("ca.crt holds %d CAs once Completed, want 1", n)
	}

	// The old CA's client certificate, with the new trust, is refused; so
	// is the old key's token.
	oldClient := withTrust(t, kc, bundle)
	oldKeyToken := withToken(t, fresh, oldToken)
	eventually(t, 2*time.Minute, "the old CA's certificate and the old key's token refused", func(ctx context.Context) error {
		for what, kubeconfig := range map[string]string{"old CA certificate": oldClient, "old key token": oldKeyToken} {
			out, err := kubectlIn(ctx, kubeconfig, "", "auth", "whoami")
			if err == nil || !strings.Contains(out, "Unauthorized") {
				return fmt.Errorf("%s: %v %s", what, err, out)
			}
		}
		return nil
	}, diags)

	// A node joins after the rotation, with the new CA's hash.
	addNodes(t, name, 1)
	check("after a join with the new CA", fresh, 4)
	var joined []string
	for _, n := range nodeNames(t, fresh) {
		if !slices.Contains(workers, n) {
			joined = append(joined, n)
		}
	}
	if after := webPods(fresh); after != podsBefore {
		t.Errorf("the web pods (uid, restarts) changed during the rotation:\nbefore\n%s\nafter\n%s", podsBefore, after)
	}
	events := mustKube(t, "-n", "default", "get", "events", "--field-selector", "involvedObject.name="+name+",reason="+kv1.ReasonCARotation, "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}")
	for _, phase := range []string{"minted", "trusts both", "removed", "trusted nowhere"} {
		if !strings.Contains(events, phase) {
			t.Errorf("no %s Event saying %q; events:\n%s", kv1.ReasonCARotation, phase, events)
		}
	}
	tc, err := getTenant(t.Context(), c, name)
	if err != nil {
		t.Fatal(err)
	}
	if st := tc.Status.Certificates.CARotation; st != nil && st.PreparingTime != nil && st.PreparedTime != nil && st.CompletingTime != nil && st.CompletedTime != nil {
		t.Logf("phases: Preparing %s, Prepared %s, Completing %s; nodes joined during and after: %v",
			st.PreparedTime.Sub(st.PreparingTime.Time), st.CompletingTime.Sub(st.PreparedTime.Time), st.CompletedTime.Sub(st.CompletingTime.Time), joined)
	} else {
		t.Errorf("status.certificates.caRotation lacks a phase time: %+v", st)
	}
}

// addNodes adds n local workers to a tenant, one after the other: two
// node add of one tenant at once race on the tenant's network segment on
// the host (both add the bridge's address).
func addNodes(t *testing.T, tenant string, n int) {
	t.Helper()
	for range n {
		nodeAdd(t, tenant)
	}
}

func nodeNames(t *testing.T, kc string) []string {
	t.Helper()
	return strings.Fields(mustTkube(t, kc, "get", "nodes", "-o", "jsonpath={.items[*].metadata.name}"))
}

func pkiSecret(t *testing.T, c client.Client, name string) map[string][]byte {
	t.Helper()
	s := &corev1.Secret{}
	if err := c.Get(t.Context(), types.NamespacedName{Namespace: "default", Name: controlplane.PKISecretName(name)}, s); err != nil {
		t.Fatal(err)
	}
	return s.Data
}

func mustParse(t *testing.T, data []byte) []string {
	t.Helper()
	certs, err := nodeca.ParseCerts(data)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, c := range certs {
		out = append(out, c.Subject.CommonName)
	}
	return out
}

// withTrust writes a copy of kubeconfig kc that trusts caPEM.
func withTrust(t *testing.T, kc string, caPEM []byte) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, cl := range cfg.Clusters {
		cl.CertificateAuthorityData, cl.CertificateAuthority = caPEM, ""
	}
	path := filepath.Join(t.TempDir(), "old-ca-client.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// withToken writes a copy of kubeconfig kc whose user holds token alone.
func withToken(t *testing.T, kc, token string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(kc)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range cfg.AuthInfos {
		*u = clientcmdapi.AuthInfo{Token: token}
	}
	f, err := os.CreateTemp(t.TempDir(), "token-*.kubeconfig")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := clientcmd.WriteToFile(*cfg, f.Name()); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// fieldAfter is the word after flag in a command line.
func fieldAfter(line, flag string) string {
	f := strings.Fields(line)
	if i := slices.Index(f, flag); i >= 0 && i+1 < len(f) {
		return f[i+1]
	}
	return ""
}

// caState is the tenant's CA rotation status and its Events.
func caState(c client.Client, name string) string {
	tc, err := getTenant(context.Background(), c, name)
	if err != nil {
		return fmt.Sprintf("\ntenant %s: %v\n", name, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	events, _ := kubectlIn(ctx, adminKubeconfig(), "", "-n", "default", "get", "events", "--field-selector", "involvedObject.name="+name, "--sort-by=.lastTimestamp")
	return fmt.Sprintf("\nstatus.certificates.caRotation: %+v\nconditions: %+v\nevents:\n%s\n", tc.Status.Certificates.CARotation, tc.Status.Conditions, events)
}
