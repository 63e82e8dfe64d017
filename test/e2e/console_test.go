package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestConsole drives the web console in a real headless Chromium, as two
// teams: alice (bound to namespace team-a) signs in with the keyboard,
// sees the API server's message next to the field for a bad version (and
// nothing is created), creates a cluster and watches it become Ready
// without a reload, downloads its kubeconfig and uses it with kubectl,
// gets a join command, looks at the datastore, and deletes the cluster;
// bob (team-b) sees and does nothing of hers, and she nothing of his,
// through the pages and the API. The console runs as `kubinception
// console` with the token of the service account `kubinception install`
// made for it (impersonation and TokenReview only); the installed
// Deployment is checked to be serving. Any error in the browser's console
// fails the test. Screenshots of each page are written under
// $KUBINCEPTION_ARTIFACTS (default test/e2e/artifacts).
func TestConsole(t *testing.T) {
	requireE2E(t)
	upAndInstall(t)
	chromium := findChromium(t)
	shots := artifactsDir(t, "console")

	mustApply(t, adminKubeconfig(), consoleTeamsManifest)
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), "delete", "--ignore-not-found", "--wait", "namespace/team-a", "namespace/team-b",
			"clusterrole/console-e2e-datastore-viewer", "clusterrolebinding/console-e2e-datastore-viewer")
	})
	// Team B's cluster, paused: the operator leaves it alone, it only has
	// to exist for team A not to see it.
	mustApply(t, adminKubeconfig(), `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"beta","namespace":"team-b"},"spec":{"paused":true}}`)

	mustKube(t, "-n", install.Namespace, "rollout", "status", "deployment/"+install.ConsoleName, "--timeout=3m")
	url, fingerprint := startConsole(t)
	aliceToken := mustKube(t, "-n", "team-a", "create", "token", "alice", "--duration=1h")
	bobToken := mustKube(t, "-n", "team-b", "create", "token", "bob", "--duration=1h")

	page := newPage(t, newBrowser(t, chromium))

	// Sign in with the keyboard: the token field has the focus; Tab goes
	// to "Sign in", Enter presses it.
	// The first load on a busy machine has hung once with the browser
	// waiting on the page's own files: load it again rather than fail.
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(page, time.Minute)
		err := chromedp.Run(ctx, chromedp.Navigate(url+"/"), chromedp.WaitVisible("#token", chromedp.ByID))
		cancel()
		if err == nil {
			break
		}
		if attempt == 3 {
			t.Fatalf("the sign-in page did not load in 3 attempts: %v", err)
		}
		t.Logf("the sign-in page did not load (%v): loading it again", err)
	}
	shot(t, page, shots, "1-sign-in")
	do(t, page, "sign in", chromedp.SetValue("#token", aliceToken, chromedp.ByID), chromedp.Focus("#token", chromedp.ByID),
		chromedp.KeyEvent(kb.Tab), chromedp.KeyEvent(kb.Enter), chromedp.WaitVisible("#clusters", chromedp.ByID),
		chromedp.Evaluate(`window.consoleE2EMarker = "no reload"`, nil))
	if user := text(t, page, "#user"); user != "system:serviceaccount:team-a:alice" {
		t.Fatalf("signed in as %q, want alice", user)
	}

	// Bad input: the API server's message next to the version field,
	// nothing created.
	do(t, page, "bad input", chromedp.Navigate(url+"/#/new"), chromedp.WaitVisible("#create", chromedp.ByID),
		chromedp.SetValue("#name", "web", chromedp.ByID), chromedp.SetValue("#version", "v1.20.0", chromedp.ByID),
		chromedp.Click(`#create button[type=submit]`), chromedp.WaitVisible(`#version[aria-invalid="true"]`))
	msg := text(t, page, "#version-error")
	want := serverMessage(t, aliceToken, "v1.20.0")
	if msg == "" || !strings.Contains(msg, want) || text(t, page, "#name-error") != "" {
		t.Fatalf("version field says %q (name field %q), want the API server's message %q there only", msg, text(t, page, "#name-error"), want)
	}
	shot(t, page, shots, "2-create-invalid")
	if out := mustKube(t, "-n", "team-a", "get", "tenantclusters", "-o", "name"); out != "" {
		t.Fatalf("a refused form created %s", out)
	}

	// Create, and watch it become Ready without a reload.
	start := time.Now()
	do(t, page, "create", chromedp.SetValue("#version", "v1.35.4", chromedp.ByID),
		chromedp.Click(`#create button[type=submit]`), chromedp.WaitVisible("#facts", chromedp.ByID))
	t.Cleanup(func() {
		cleanupKubectl(t, adminKubeconfig(), "-n", "team-a", "delete", "tenantcluster", "web", "--ignore-not-found", "--timeout=5m")
	})

	testTeamsApart(t, newBrowser(t, chromium), url, fingerprint, aliceToken, bobToken, shots)

	readyCtx, readyCancel := context.WithTimeout(page, 6*time.Minute)
	defer readyCancel()
	if err := chromedp.Run(readyCtx, chromedp.WaitVisible(`h1 .badge[data-ready="True"]`)); err != nil {
		t.Fatalf("the cluster page did not show web Ready: %v\n%s", err, clusterState(t))
	}
	t.Logf("web Ready on the page %.1fs after create", time.Since(start).Seconds())
	var marker string
	do(t, page, "marker", chromedp.Evaluate(`window.consoleE2EMarker || ""`, &marker))
	if marker != "no reload" {
		t.Fatal("the page was reloaded while waiting for Ready")
	}
	if endpoint := text(t, page, "#endpoint"); !strings.HasPrefix(endpoint, "https://") {
		t.Fatalf("endpoint on the page: %q", endpoint)
	}
	do(t, page, "events", chromedp.WaitVisible("#events tbody tr", chromedp.ByQuery), chromedp.WaitVisible("#conditions tbody tr", chromedp.ByQuery))
	shot(t, page, shots, "3-cluster-ready")

	// Download the kubeconfig and use it.
	downloads := t.TempDir()
	do(t, page, "download", browser.SetDownloadBehavior(browser.SetDownloadBehaviorBehaviorAllow).WithDownloadPath(downloads).WithEventsEnabled(true),
		chromedp.Click(`//button[text()="Download kubeconfig"]`), chromedp.WaitVisible("#kubeconfig-issued", chromedp.ByID))
	kc := filepath.Join(downloads, "web.kubeconfig")
	eventually(t, time.Minute, "the kubeconfig download", func(context.Context) error {
		_, err := os.Stat(kc)
		return err
	})
	if got := names(t, kc, "get", "namespaces"); !strings.Contains(strings.Join(got, " "), "namespace/kube-system") {
		t.Fatalf("the downloaded kubeconfig lists namespaces %v", got)
	}
	do(t, page, "join command", chromedp.Click(`//button[text()="Join command"]`), chromedp.WaitVisible("#join-command", chromedp.ByID))
	if jc := text(t, page, "#join-command"); !strings.HasPrefix(jc, "kubeadm join ") || !strings.Contains(jc, "--discovery-token-ca-cert-hash sha256:") {
		t.Fatalf("join command on the page: %q", jc)
	}
	do(t, page, "nodes", chromedp.WaitVisible("#nodes-message", chromedp.ByID))
	shot(t, page, shots, "4-cluster-access")
	// Lifecycle actions: a certificate rotation asked for from the page
	// reaches the TenantCluster as alice's annotation; hibernation is
	// refused on the page while the cluster does not allow it.
	do(t, page, "rotate certificates", chromedp.Click(`//button[text()="Rotate certificates"]`),
		chromedp.WaitVisible(`//p[starts-with(text(),"Certificate rotation requested")]`))
	if v := mustKube(t, "-n", "team-a", "get", "tenantcluster", "web", "-o", `jsonpath={.metadata.annotations.kubinception\.dev/certificate-rotation-requested}`); v == "" {
		t.Error("Rotate certificates on the page set no kubinception.dev/certificate-rotation-requested annotation")
	}
	do(t, page, "hibernate", chromedp.Click(`//button[text()="Hibernate"]`),
		chromedp.WaitVisible(`//p[contains(text(),"does not allow hibernation")]`))

	// The list, at desktop and at phone width, live; the datastore page.
	do(t, page, "list", chromedp.Navigate(url+"/#/"), chromedp.WaitVisible(`tr[data-cluster="team-a/web"] .badge[data-ready="True"]`))
	shot(t, page, shots, "5-clusters")
	var overflow bool
	do(t, page, "phone", chromedp.EmulateViewport(390, 844), chromedp.WaitVisible("#clusters", chromedp.ByID),
		chromedp.Evaluate(`document.documentElement.scrollWidth > window.innerWidth + 1`, &overflow))
	shot(t, page, shots, "6-clusters-phone")
	if overflow {
		t.Error("at phone width (390px) the list page scrolls sideways")
	}
	do(t, page, "datastore", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(url+"/#/datastores/default"),
		chromedp.WaitVisible(`#datastore-tenants`, chromedp.ByID))
	if members := text(t, page, "#members"); !strings.Contains(members, "healthy") {
		t.Fatalf("datastore members on the page: %q", members)
	}
	shot(t, page, shots, "7-datastore")

	// Delete with confirmation; the page sees it go.
	do(t, page, "delete", chromedp.Navigate(url+"/#/clusters/team-a/web"), chromedp.WaitVisible(`h1 .badge[data-ready="True"]`),
		chromedp.Click("#delete", chromedp.ByID), chromedp.WaitVisible("#confirm-name", chromedp.ByID))
	shot(t, page, shots, "8-delete-confirm")
	do(t, page, "delete", chromedp.SendKeys("#confirm-name", "web", chromedp.ByID), chromedp.Click("#confirm-delete", chromedp.ByID))
	goneCtx, goneCancel := context.WithTimeout(page, 5*time.Minute)
	defer goneCancel()
	if err := chromedp.Run(goneCtx, chromedp.WaitVisible("#gone", chromedp.ByID)); err != nil {
		t.Fatalf("the cluster page did not show web deleted: %v\n%s", err, clusterState(t))
	}
	shot(t, page, shots, "9-deleted")
	if _, err := kube(t, "-n", "team-a", "get", "tenantcluster", "web"); err == nil {
		t.Fatal("web still exists after the page showed it deleted")
	}
	t.Logf("screenshots in %s", shots)
}

// testTeamsApart: bob, bound to team-b, sees and changes nothing of
// team-a's through the pages and the API, and alice nothing of team-b's.
func testTeamsApart(t *testing.T, browser context.Context, url, fingerprint, aliceToken, bobToken, shots string) {
	// A browser of its own: bob shares no cookie with alice.
	bob := newPage(t, browser)
	do(t, bob, "bob signs in", chromedp.Navigate(url+"/"), chromedp.WaitVisible("#token", chromedp.ByID),
		chromedp.SetValue("#token", bobToken, chromedp.ByID), chromedp.Click(`#signin button[type=submit]`),
		chromedp.WaitVisible("#clusters", chromedp.ByID), chromedp.WaitVisible(`tr[data-cluster="team-b/beta"]`))
	if rows := text(t, bob, "#clusters tbody"); strings.Contains(rows, "web") {
		t.Fatalf("bob's list shows team-a's cluster: %q", rows)
	}
	do(t, bob, "bob looks at team-a", chromedp.SetValue("#namespace", "team-a", chromedp.ByID), chromedp.Click(`form.toolbar button[type=submit]`),
		chromedp.WaitVisible("#list-message.error", chromedp.ByQuery))
	if msg := text(t, bob, "#list-message"); !strings.Contains(msg, "forbidden") || strings.Contains(text(t, bob, "#clusters tbody"), "web") {
		t.Fatalf("bob listing team-a: message %q", msg)
	}
	shot(t, bob, shots, "2b-other-team-refused")
	do(t, bob, "bob opens team-a's cluster", chromedp.Navigate(url+"/#/clusters/team-a/web"), chromedp.WaitVisible("#action-output .error", chromedp.ByQuery))
	if msg := text(t, bob, "#action-output"); !strings.Contains(msg, "forbidden") {
		t.Fatalf("bob opening team-a/web: %q", msg)
	}

	// The API, with each team's session, for the other team's cluster.
	for _, c := range []struct{ user, token, ns, name string }{{"bob", bobToken, "team-a", "web"}, {"alice", aliceToken, "team-b", "beta"}} {
		api := newAPIClient(t, url, fingerprint, c.token)
		base := "/console/api/namespaces/" + c.ns + "/tenantclusters/" + c.name
		kube := "/kube/apis/kubinception.dev/v1alpha1/namespaces/" + c.ns + "/tenantclusters"
		for _, r := range []struct{ method, path, body string }{
			{"GET", kube, ""}, {"GET", kube + "/" + c.name, ""}, {"DELETE", kube + "/" + c.name, ""},
			{"PATCH", kube + "/" + c.name, `{"spec":{"version":"v1.35.5"}}`},
			{"POST", kube, `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"intruder","namespace":"` + c.ns + `"}}`},
			{"POST", base + "/kubeconfig", ""}, {"POST", base + "/join-command", ""}, {"POST", base + "/revoke-kubeconfigs", ""},
			{"GET", base + "/nodes", ""},
		} {
			if code, body := api.do(t, r.method, r.path, r.body); code != http.StatusForbidden {
				t.Errorf("%s %s %s answered %d, want 403: %s", c.user, r.method, r.path, code, body)
			}
		}
	}
	if out := mustKube(t, "-n", "team-b", "get", "tenantclusters", "-o", "jsonpath={.items[*].metadata.name}"); out != "beta" {
		t.Fatalf("team-b holds %q after alice's attempts, want beta", out)
	}
}

// consoleTeamsManifest: alice may manage TenantClusters in team-a (and
// read the Secrets kubeconfigs are made from, and events) and view
// Datastores; bob the same in team-b, without Datastores.
const consoleTeamsManifest = `
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: alice, namespace: team-a}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: bob, namespace: team-b}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: console-e2e-tenant-admin}
rules:
- apiGroups: [kubinception.dev]
  resources: [tenantclusters]
  verbs: [get, list, watch, create, update, patch, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tenant-admin, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: console-e2e-tenant-admin}
subjects: [{kind: ServiceAccount, name: alice, namespace: team-a}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: tenant-admin, namespace: team-b}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: console-e2e-tenant-admin}
subjects: [{kind: ServiceAccount, name: bob, namespace: team-b}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: console-e2e-datastore-viewer}
rules:
- apiGroups: [kubinception.dev]
  resources: [datastores]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: console-e2e-datastore-viewer}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: console-e2e-datastore-viewer}
subjects: [{kind: ServiceAccount, name: alice, namespace: team-a}]
`

// findChromium is the distribution's Chromium (hack/deps installs it).
func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium on PATH: hack/deps installs the distribution's package (apt-get install chromium)")
	return ""
}

// artifactsDir is where a suite keeps its screenshots:
// $KUBINCEPTION_ARTIFACTS/NAME, else test/e2e/artifacts/NAME.
func artifactsDir(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(envOr("KUBINCEPTION_ARTIFACTS", "artifacts"), name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots go to %s", abs)
	return abs
}

// startConsole runs `kubinception console` on a free loopback port with
// the installed console service account's token, and returns its URL and
// the SHA-256 fingerprint of its self-signed certificate.
func startConsole(t *testing.T) (string, string) {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(adminKubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cluster := cfg.Clusters[cfg.Contexts[cfg.CurrentContext].Cluster]
	token := mustKube(t, "-n", install.Namespace, "create", "token", install.ConsoleName, "--duration=1h")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["admin"] = cluster
	kc.AuthInfos["console"] = &clientcmdapi.AuthInfo{Token: token}
	kc.Contexts["console"] = &clientcmdapi.Context{Cluster: "admin", AuthInfo: "console"}
	kc.CurrentContext = "console"
	path := filepath.Join(t.TempDir(), "console.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	cmd := exec.Command(bin, "console", "--kubeconfig", path, "--listen", addr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs syncBuf
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("console log:\n%s", logs.String())
		}
	})
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	fingerprint := ""
	deadline := time.After(time.Minute)
	for !strings.HasPrefix(fingerprint, "ok") {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("kubinception console exited:\n%s", logs.String())
			}
			if _, fp, found := strings.Cut(l, "fingerprint "); found {
				fingerprint = fp
			}
			if strings.HasPrefix(l, "console serving on ") {
				go func() {
					for range lines {
					}
				}()
				return "https://" + addr, fingerprint
			}
		case <-deadline:
			t.Fatalf("kubinception console did not start within a minute:\n%s", logs.String())
		}
	}
	return "", ""
}

// syncBuf is a buffer a process writes to while the test reads it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// newBrowser is an allocator of a headless Chromium of its own, stopped
// when the test ends.
func newBrowser(t *testing.T, chromium string) context.Context {
	t.Helper()
	ctx, cancel := chromedp.NewExecAllocator(context.Background(), append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		// The console's self-signed certificate; the API client below
		// pins its fingerprint instead.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900))...)
	t.Cleanup(cancel)
	return ctx
}

// newPage opens a tab that fails the test on any error in the browser's
// console.
func newPage(t *testing.T, alloc context.Context) context.Context {
	t.Helper()
	page, cancel := chromedp.NewContext(alloc)
	t.Cleanup(cancel)
	watchConsoleErrors(t, page)
	return page
}

// watchConsoleErrors fails the test on every console.error or warning, an
// uncaught exception, or an error the browser logs. Answers the console
// gives on purpose (401 before sign-in, 422 for bad input, 403 for
// another team) are logged by the browser as network entries, which are
// left out: the test checks those answers itself.
func watchConsoleErrors(t *testing.T, page context.Context) {
	var mu sync.Mutex
	var errs []string
	chromedp.ListenTarget(page, func(ev any) {
		var msg string
		switch ev := ev.(type) {
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.APITypeError || ev.Type == cdpruntime.APITypeWarning || ev.Type == cdpruntime.APITypeAssert {
				var parts []string
				for _, a := range ev.Args {
					parts = append(parts, string(a.Value)+a.Description)
				}
				msg = fmt.Sprintf("console.%s: %s", ev.Type, strings.Join(parts, " "))
			}
		case *cdpruntime.EventExceptionThrown:
			msg = "uncaught: " + ev.ExceptionDetails.Text
			if ev.ExceptionDetails.Exception != nil {
				msg += " " + ev.ExceptionDetails.Exception.Description
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.LevelError && ev.Entry.Source != cdplog.SourceNetwork {
				msg = fmt.Sprintf("%s: %s (%s)", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL)
			}
		}
		if msg != "" {
			mu.Lock()
			errs = append(errs, msg)
			mu.Unlock()
		}
	})
	if err := chromedp.Run(page, cdplog.Enable(), cdpruntime.Enable()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range errs {
			t.Errorf("browser console: %s", e)
		}
	})
}

// do runs browser actions, failing the test with the page's text.
func do(t *testing.T, page context.Context, what string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(page, 90*time.Second)
	defer cancel()
	if err := chromedp.Run(ctx, actions...); err != nil {
		var body string
		_ = chromedp.Run(page, chromedp.Text("main", &body, chromedp.ByQuery))
		t.Fatalf("%s: %v\npage:\n%s", what, err, body)
	}
}

func text(t *testing.T, page context.Context, sel string) string {
	t.Helper()
	var s string
	do(t, page, "read "+sel, chromedp.Text(sel, &s, chromedp.ByQuery))
	return strings.TrimSpace(s)
}

func shot(t *testing.T, page context.Context, dir, name string) {
	t.Helper()
	var png []byte
	do(t, page, "screenshot "+name, chromedp.FullScreenshot(&png, 100))
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// serverMessage is what the admin cluster itself answers alice for a
// TenantCluster of version v, via kubectl's server-side dry run.
func serverMessage(t *testing.T, token, v string) string {
	t.Helper()
	manifest := fmt.Sprintf(`{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":"web","namespace":"team-a"},"spec":{"version":%q}}`, v)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := kubectlIn(ctx, adminKubeconfig(), manifest, "create", "--dry-run=server", "--token", token, "-f", "-")
	if err == nil {
		t.Fatalf("the admin cluster accepts version %s: %s", v, out)
	}
	// kubectl prints: ... is invalid: spec.version: Invalid value: "v1.20.0": MESSAGE
	msg := err.Error()
	if i := strings.LastIndex(msg, `"`+v+`": `); i >= 0 {
		msg = msg[i+len(v)+4:]
	}
	msg = strings.TrimSpace(msg)
	if j := strings.IndexAny(msg, "\n"); j >= 0 {
		msg = msg[:j]
	}
	if len(msg) > 60 {
		msg = msg[:60]
	}
	return msg
}

// apiClient calls the console's HTTP API as a script would: sign in with
// a token, then send the CSRF token on every change. It trusts only the
// console's certificate fingerprint.
type apiClient struct {
	c    *http.Client
	url  string
	csrf string
}

func newAPIClient(t *testing.T, url, fingerprint, token string) *apiClient {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	pin := func(raw [][]byte, _ [][]*x509.Certificate) error {
		sum := sha256.Sum256(raw[0])
		if hex.EncodeToString(sum[:]) != fingerprint {
			return errors.New("the console's certificate is not the one it printed")
		}
		return nil
	}
	a := &apiClient{url: url, c: &http.Client{Jar: jar, Timeout: time.Minute, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: pin}}}} //nolint:gosec // pinned by fingerprint
	body, _ := json.Marshal(map[string]string{"token": token})
	res, err := a.c.Post(url+"/console/api/session", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var info struct {
		CSRF string `json:"csrfToken"`
	}
	if err := json.NewDecoder(res.Body).Decode(&info); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("sign-in answered %d (%v)", res.StatusCode, err)
	}
	a.csrf = info.CSRF
	return a
}

func (a *apiClient) do(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, a.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("X-CSRF-Token", a.csrf)
	if method == "PATCH" {
		req.Header.Set("Content-Type", "application/merge-patch+json")
	} else if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := a.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(data)
}
