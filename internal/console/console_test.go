package console

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/scheme"
	"kubinception.dev/kubinception/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// syncBuffer collects the console's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fixture is a console in front of a real API server, acting with the
// RBAC the installation renders, and two teams: alice may manage
// TenantClusters in namespace A only, bob in namespace B only.
type fixture struct {
	admin      client.Client
	console    *rest.Config
	url        string
	ts         *httptest.Server
	a, b       string
	alice, bob string
	log        *syncBuffer
	clock      *clock
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func setUp(t *testing.T) *fixture {
	t.Helper()
	api := testenv.SharedAPIServer(t)
	ctx := t.Context()
	cs, err := kubernetes.NewForConfig(api.Config)
	if err != nil {
		t.Fatal(err)
	}
	suffix := fmt.Sprintf("%04x", rand.IntN(1<<16))
	f := &fixture{admin: api.Client, a: "team-a-" + suffix, b: "team-b-" + suffix, log: &syncBuffer{}, clock: &clock{t: time.Now()}}
	for _, ns := range []string{install.Namespace, f.a, f.b} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	// The console's service account and RBAC exactly as installed.
	objs, err := install.Render(install.Options{Image: "kubinception.local/kubinception:test", Registry: "kubinception.local", ImagePullPolicy: corev1.PullNever})
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range objs {
		if u.GetName() != install.ConsoleName || (u.GetKind() != "ServiceAccount" && u.GetKind() != "ClusterRole" && u.GetKind() != "ClusterRoleBinding") {
			continue
		}
		u := u.DeepCopy()
		//nolint:staticcheck // unstructured server-side apply
		if err := api.Client.Patch(ctx, u, client.Apply, client.ForceOwnership, client.FieldOwner("console-test")); err != nil {
			t.Fatalf("apply %s %s: %v", u.GetKind(), u.GetName(), err)
		}
	}
	token := func(ns, sa string) string {
		if _, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return tr.Status.Token
	}
	for ns, sa := range map[string]string{f.a: "alice", f.b: "bob"} {
		role := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "tenant-admin", Namespace: ns}, Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantclusters", "tenantbackups"}, Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}},
			{APIGroups: []string{""}, Resources: []string{"secrets"}, Verbs: []string{"get"}},
			{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"get", "list", "watch"}},
		}}
		if _, err := cs.RbacV1().Roles(ns).Create(ctx, role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "tenant-admin", Namespace: ns},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: "tenant-admin"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: sa, Namespace: ns}}}
		if _, err := cs.RbacV1().RoleBindings(ns).Create(ctx, rb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	f.alice, f.bob = token(f.a, "alice"), token(f.b, "bob")
	f.console = &rest.Config{Host: api.Config.Host, TLSClientConfig: rest.TLSClientConfig{CAData: api.Config.CAData},
		BearerToken: token(install.Namespace, install.ConsoleName)}
	srv, err := New(Options{Config: f.console, Now: f.clock.now, SessionTTL: time.Hour,
		Log: funcr.New(func(prefix, args string) { fmt.Fprintln(f.log, prefix, args) }, funcr.Options{Verbosity: 1})})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewTLSServer(srv.Handler())
	t.Cleanup(ts.Close)
	f.url, f.ts = ts.URL, ts
	return f
}

// browser is a signed-in (or not) HTTP client of the console with its
// own cookie jar.
type browser struct {
	t    *testing.T
	c    *http.Client
	url  string
	csrf string
}

func (f *fixture) browser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Jar: jar, Transport: f.ts.Client().Transport, Timeout: time.Minute}
	return &browser{t: t, c: c, url: f.url}
}

// do sends a request and returns the status and body; headers are
// "Key: value" pairs.
func (b *browser) do(method, path, body string, headers ...string) (int, []byte, http.Header) {
	b.t.Helper()
	req, err := http.NewRequest(method, b.url+path, strings.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	res, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return res.StatusCode, data, res.Header
}

func (b *browser) signIn(token string) *http.Response {
	b.t.Helper()
	body, _ := json.Marshal(map[string]string{"token": token})
	res, err := b.c.Post(b.url+"/console/api/session", "application/json", bytes.NewReader(body))
	if err != nil {
		b.t.Fatal(err)
	}
	defer res.Body.Close()
	var info sessionInfo
	if res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(&info); err != nil {
			b.t.Fatal(err)
		}
		b.csrf = info.CSRF
	}
	return res
}

func status(t *testing.T, data []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(data, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("answer is not a Kubernetes Status (%v): %s", err, data)
	}
	return st
}

func tenantJSON(ns, name, version string) string {
	return fmt.Sprintf(`{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantCluster","metadata":{"name":%q,"namespace":%q},"spec":{"version":%q}}`, name, ns, version)
}

func collection(ns string) string {
	return "/kube/apis/kubinception.dev/v1alpha1/namespaces/" + ns + "/tenantclusters"
}

func (f *fixture) tenants(t *testing.T, ns string) []string {
	t.Helper()
	var list kv1.TenantClusterList
	if err := f.admin.List(t.Context(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tc := range list.Items {
		names = append(names, tc.Name)
	}
	return names
}

// TestConsole checks, against a real API server, who may do what through
// the console: sign-in, the session cookie, CSRF, that every request is
// made as the user (team A sees and changes nothing of team B's), the
// API server's validation answers, the proxy's allow-list, watches as
// server-sent events, and that the console's own identity reads nothing.
func TestConsole(t *testing.T) {
	f := setUp(t)
	ctx := t.Context()
	alice := f.browser(t)

	t.Run("sign-in refuses a token the admin cluster does not accept", func(t *testing.T) {
		b := f.browser(t)
		res := b.signIn("not-a-token")
		if res.StatusCode != http.StatusUnauthorized {
			t.Fatalf("status %d, want 401", res.StatusCode)
		}
		if code, _, _ := b.do("GET", collection(f.a), ""); code != http.StatusUnauthorized {
			t.Fatalf("without a session the proxy answered %d, want 401", code)
		}
	})
	t.Run("sign-in takes JSON only", func(t *testing.T) {
		code, body, _ := f.browser(t).do("POST", "/console/api/session", "token="+f.alice, "Content-Type: application/x-www-form-urlencoded")
		if code != http.StatusUnsupportedMediaType {
			t.Fatalf("a form-encoded sign-in answered %d, want 415: %s", code, body)
		}
	})
	t.Run("sign-in sets a strict session cookie", func(t *testing.T) {
		res := alice.signIn(f.alice)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("sign-in answered %d", res.StatusCode)
		}
		var c *http.Cookie
		for _, k := range res.Cookies() {
			if k.Name == cookieName {
				c = k
			}
		}
		if c == nil || !c.HttpOnly || !c.Secure || c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Fatalf("session cookie %+v, want HttpOnly, Secure, SameSite=Strict, Path=/ and no Domain", c)
		}
		code, body, _ := alice.do("GET", "/console/api/session", "")
		var info sessionInfo
		if err := json.Unmarshal(body, &info); code != http.StatusOK || err != nil {
			t.Fatalf("session: %d %s", code, body)
		}
		if want := "system:serviceaccount:" + f.a + ":alice"; info.User.Name != want || info.CSRF != alice.csrf {
			t.Fatalf("session user %q csrf match %t, want %q and the sign-in's token", info.User.Name, info.CSRF == alice.csrf, want)
		}
	})
	csrf := func(b *browser) string { return "X-CSRF-Token: " + b.csrf }

	t.Run("state changes need the CSRF token and the console's origin", func(t *testing.T) {
		for _, tc := range []struct {
			name    string
			headers []string
		}{
			{"no token", nil},
			{"wrong token", []string{"X-CSRF-Token: forged"}},
			{"another origin", []string{csrf(alice), "Origin: https://evil.example"}},
			{"cross-site fetch", []string{csrf(alice), "Sec-Fetch-Site: cross-site"}},
		} {
			code, body, _ := alice.do("POST", collection(f.a), tenantJSON(f.a, "csrf", "v1.35.4"), tc.headers...)
			if code != http.StatusForbidden {
				t.Errorf("%s: create answered %d, want 403: %s", tc.name, code, body)
			}
		}
		if got := f.tenants(t, f.a); len(got) != 0 {
			t.Fatalf("refused requests created %v", got)
		}
	})
	t.Run("a team creates and lists its own clusters", func(t *testing.T) {
		code, body, _ := alice.do("POST", collection(f.a), tenantJSON(f.a, "alpha", "v1.35.4"), csrf(alice), "Origin: "+f.url)
		if code != http.StatusCreated {
			t.Fatalf("create answered %d: %s", code, body)
		}
		code, body, _ = alice.do("GET", collection(f.a), "")
		var list kv1.TenantClusterList
		if err := json.Unmarshal(body, &list); code != http.StatusOK || err != nil || len(list.Items) != 1 || list.Items[0].Name != "alpha" {
			t.Fatalf("list answered %d (%v): %s", code, err, body)
		}
	})
	t.Run("a team sees and changes nothing of another's", func(t *testing.T) {
		if err := f.admin.Create(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "beta", Namespace: f.b}}); err != nil {
			t.Fatal(err)
		}
		for _, r := range []struct{ method, path, body string }{
			{"GET", collection(f.b), ""},
			{"GET", collection(f.b) + "/beta", ""},
			{"GET", "/kube/apis/kubinception.dev/v1alpha1/tenantclusters", ""},
			{"POST", collection(f.b), tenantJSON(f.b, "intruder", "v1.35.4")},
			{"PATCH", collection(f.b) + "/beta", `{"spec":{"paused":true}}`},
			{"DELETE", collection(f.b) + "/beta", ""},
			{"POST", "/console/api/namespaces/" + f.b + "/tenantclusters/beta/kubeconfig", ""},
			{"POST", "/console/api/namespaces/" + f.b + "/tenantclusters/beta/join-command", ""},
			{"POST", "/console/api/namespaces/" + f.b + "/tenantclusters/beta/revoke-kubeconfigs", ""},
			{"GET", "/console/api/namespaces/" + f.b + "/tenantclusters/beta/nodes", ""},
		} {
			headers := []string{csrf(alice), "Content-Type: application/merge-patch+json"}
			// Headers a browser might smuggle to become someone else.
			headers = append(headers, "Impersonate-User: system:admin", "Impersonate-Group: system:masters", "Authorization: Bearer "+f.bob)
			code, body, _ := alice.do(r.method, r.path, r.body, headers...)
			if code != http.StatusForbidden {
				t.Errorf("alice %s %s answered %d, want 403: %s", r.method, r.path, code, body)
				continue
			}
			if st := status(t, body); !strings.Contains(st.Message, "system:serviceaccount:"+f.a+":alice") {
				t.Errorf("alice %s %s: the refusal does not name alice, so it was not made as her: %s", r.method, r.path, st.Message)
			}
		}
		tc := &kv1.TenantCluster{}
		if err := f.admin.Get(ctx, client.ObjectKey{Namespace: f.b, Name: "beta"}, tc); err != nil || tc.Spec.Paused || !tc.DeletionTimestamp.IsZero() {
			t.Fatalf("team B's cluster after alice's attempts: %v paused=%t deleting=%t", err, tc.Spec.Paused, !tc.DeletionTimestamp.IsZero())
		}
		if got := f.tenants(t, f.b); len(got) != 1 {
			t.Fatalf("team B's namespace holds %v, want beta only", got)
		}
	})
	t.Run("the API server's validation answers keep their field paths", func(t *testing.T) {
		for _, tc := range []struct{ name, version, field string }{
			{"Bad_Name", "v1.35.4", "metadata.name"},
			{"old", "v1.20.0", "spec.version"},
		} {
			code, body, _ := alice.do("POST", collection(f.a), tenantJSON(f.a, tc.name, tc.version), csrf(alice))
			if code != http.StatusUnprocessableEntity {
				t.Errorf("create %s %s answered %d, want 422: %s", tc.name, tc.version, code, body)
				continue
			}
			st := status(t, body)
			found := false
			for _, c := range st.Details.Causes {
				found = found || c.Field == tc.field
			}
			if !found {
				t.Errorf("create %s %s: causes %+v, want one for %s", tc.name, tc.version, st.Details.Causes, tc.field)
			}
		}
		if got := f.tenants(t, f.a); len(got) != 1 {
			t.Fatalf("team A's namespace holds %v, want alpha only", got)
		}
	})
	t.Run("the proxy serves the console's resources only", func(t *testing.T) {
		for _, r := range []struct{ method, path string }{
			{"GET", "/kube/api/v1/namespaces/" + f.a + "/secrets"},
			{"GET", "/kube/api/v1/namespaces/" + f.a + "/secrets/x"},
			{"POST", "/kube/api/v1/namespaces/" + f.a + "/events"},
			{"GET", "/kube/apis/kubinception.dev/v1alpha1/namespaces/" + f.a + "/tenantclusters/alpha/../../../../../../api/v1/secrets"},
			{"PUT", "/kube/apis/kubinception.dev/v1alpha1/namespaces/" + f.a + "/tenantclusters/alpha/status"},
		} {
			code, body, _ := alice.do(r.method, r.path, "", csrf(alice))
			if code != http.StatusNotFound && code != http.StatusMovedPermanently {
				t.Errorf("%s %s answered %d, want 404: %s", r.method, r.path, code, body)
			}
		}
		if code, body, _ := alice.do("GET", "/kube/api/v1/namespaces/"+f.a+"/events", ""); code != http.StatusOK {
			t.Errorf("events of team A answered %d: %s", code, body)
		}
		// A backup, as the page's Back up button asks for one: made as
		// alice in her namespace, refused in bob's.
		backup := `{"apiVersion":"kubinception.dev/v1alpha1","kind":"TenantBackup","metadata":{"name":"alpha-1"},"spec":{"cluster":"alpha"}}`
		if code, body, _ := alice.do("POST", "/kube/apis/kubinception.dev/v1alpha1/namespaces/"+f.a+"/tenantbackups", backup, csrf(alice)); code != http.StatusCreated {
			t.Errorf("a backup in team A's namespace answered %d: %s", code, body)
		}
		if code, body, _ := alice.do("POST", "/kube/apis/kubinception.dev/v1alpha1/namespaces/"+f.b+"/tenantbackups", backup, csrf(alice)); code != http.StatusForbidden || !strings.Contains(string(body), "alice") {
			t.Errorf("a backup in team B's namespace answered %d: %s", code, body)
		}
	})
	t.Run("watches stream as server-sent events, as the user", func(t *testing.T) {
		events := alice.stream(t, "/console/api/watch?resource=tenantclusters&namespace="+f.a)
		if ev := events.next(t); ev.name != "list" || !strings.Contains(ev.data, `"alpha"`) {
			t.Fatalf("first event %s %s, want the list with alpha", ev.name, ev.data)
		}
		if err := f.admin.Create(ctx, &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "gamma", Namespace: f.a}}); err != nil {
			t.Fatal(err)
		}
		if ev := events.next(t); ev.name != "ADDED" || !strings.Contains(ev.data, `"gamma"`) {
			t.Fatalf("event %s %s, want gamma ADDED", ev.name, ev.data)
		}
		other := alice.stream(t, "/console/api/watch?resource=tenantclusters&namespace="+f.b)
		if ev := other.next(t); ev.name != "failure" || !strings.Contains(ev.data, `"code":403`) {
			t.Fatalf("team B's watch for alice: %s %s, want a 403 failure", ev.name, ev.data)
		}
	})
	t.Run("the console's own identity reads nothing", func(t *testing.T) {
		c, err := client.New(f.console, client.Options{Scheme: scheme.New()})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.List(ctx, &kv1.TenantClusterList{}); !apierrors.IsForbidden(err) {
			t.Errorf("the console's service account listing TenantClusters: %v, want Forbidden", err)
		}
		if err := c.List(ctx, &corev1.SecretList{}, client.InNamespace(f.a)); !apierrors.IsForbidden(err) {
			t.Errorf("the console's service account listing Secrets: %v, want Forbidden", err)
		}
	})
	t.Run("sign-out ends the session", func(t *testing.T) {
		b := f.browser(t)
		b.signIn(f.bob)
		if code, body, _ := b.do("DELETE", "/console/api/session", "", csrf(b)); code != http.StatusNoContent {
			t.Fatalf("sign-out answered %d: %s", code, body)
		}
		if code, _, _ := b.do("GET", collection(f.b), ""); code != http.StatusUnauthorized {
			t.Fatalf("after sign-out the proxy answered %d, want 401", code)
		}
	})
	t.Run("sessions expire", func(t *testing.T) {
		b := f.browser(t)
		b.signIn(f.bob)
		if code, _, _ := b.do("GET", collection(f.b), ""); code != http.StatusOK {
			t.Fatalf("bob listing his clusters answered %d", code)
		}
		f.clock.add(time.Hour + time.Second)
		if code, _, _ := b.do("GET", collection(f.b), ""); code != http.StatusUnauthorized {
			t.Fatalf("after the session's lifetime the proxy answered %d, want 401", code)
		}
	})
	if log := f.log.String(); strings.Contains(log, f.alice) || strings.Contains(log, f.bob) || strings.Contains(log, alice.csrf) || !strings.Contains(log, "alice") {
		t.Errorf("the console's log holds a token or a CSRF token, or names no user:\n%s", log)
	}
}

// sse reads server-sent events.
type sse struct {
	r      *bufio.Reader
	cancel context.CancelFunc
}

type sseEvent struct{ name, data string }

func (b *browser) stream(t *testing.T, path string) *sse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	req, err := http.NewRequestWithContext(ctx, "GET", b.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := *b.c
	c.Timeout = 0
	res, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("watch answered %d %s", res.StatusCode, ct)
	}
	t.Cleanup(func() { cancel(); res.Body.Close() })
	return &sse{r: bufio.NewReader(res.Body), cancel: cancel}
}

// next returns the next event, skipping comments and retry lines.
func (s *sse) next(t *testing.T) sseEvent {
	t.Helper()
	var ev sseEvent
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading the event stream: %v", err)
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "" && ev.name != "":
			return ev
		case strings.HasPrefix(line, "event: "):
			ev.name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			ev.data = strings.TrimPrefix(line, "data: ")
		}
	}
}
