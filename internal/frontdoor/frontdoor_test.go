package frontdoor

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubinception.dev/kubinception/internal/pki"
)

// backend is a TLS server answering with its own name, as a tenant API
// server would answer with its own objects.
type backend struct {
	addr string
	ln   net.Listener
}

func startBackend(t *testing.T, ca *pki.KeyPair, name string, ln net.Listener) *backend {
	t.Helper()
	kp, err := ca.Issue(pki.Spec{CommonName: name, DNSNames: []string{name}, Server: true}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, name) }),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })
	return &backend{addr: ln.Addr().String(), ln: ln}
}

// recorder is an Activity that remembers what it heard and can run a
// function on the first wake (start the backend, as the operator would).
type recorder struct {
	mu      sync.Mutex
	touches []string
	onWake  func()
}

func (r *recorder) Touch(_ context.Context, lease string, wake bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.touches = append(r.touches, fmt.Sprintf("%s wake=%t", lease, wake))
	if wake && r.onWake != nil {
		f := r.onWake
		r.onWake = nil
		go f()
	}
}

func (r *recorder) heard() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.touches...)
}

func route(ns, name, host, apiServer string, created time.Time) *corev1.ConfigMap {
	cm := RouteConfigMap(ns, name, Route{Host: host, APIServer: apiServer, TunnelHost: "t-" + host, Tunnel: apiServer})
	cm.CreationTimestamp = metav1.NewTime(created)
	return cm
}

func client(ca *pki.KeyPair, proxy string) *http.Client {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool},
		// Every name resolves to the front door, as a wildcard record
		// would make it.
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, proxy)
		},
	}}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func startProxy(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestRoutesByServerNameAndRefusesUnknownNames(t *testing.T) {
	ca, err := pki.NewCA("tenants", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := startBackend(t, ca, "a.tenants.test", nil)
	b := startBackend(t, ca, "b.tenants.test", nil)
	rec := &recorder{}
	srv := &Server{Activity: rec}
	srv.SetTable(BuildTable([]*corev1.ConfigMap{
		route("ns1", "a", "a.tenants.test", a.addr, time.Unix(1, 0)),
		route("ns1", "b", "b.tenants.test", b.addr, time.Unix(2, 0)),
	}))
	proxy := startProxy(t, srv)
	c := client(ca, proxy)
	for _, name := range []string{"a.tenants.test", "b.tenants.test", "A.Tenants.Test"} {
		got, err := get(c, "https://"+name+"/")
		if err != nil {
			t.Fatalf("GET through the front door for %s: %v", name, err)
		}
		if want := strings.ToLower(name); got != want {
			t.Errorf("%s was answered by %q, want %q", name, got, want)
		}
	}
	// A name no route carries is refused before anything is dialled;
	// so is a client that sends no name (an address as the server).
	if got, err := get(c, "https://c.tenants.test/"); err == nil {
		t.Errorf("an unknown name was answered: %q", got)
	}
	if got, err := get(client(ca, proxy), "https://127.0.0.1/"); err == nil {
		t.Errorf("a ClientHello without a server name was answered: %q", got)
	}
	if h := rec.heard(); len(h) == 0 || h[0] != "ns1.a wake=false" {
		t.Errorf("activity = %v, want ns1.a reported first", h)
	}
}

func TestHoldsTheConnectionWhileTheTenantWakes(t *testing.T) {
	ca, err := pki.NewCA("tenants", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	// The backend's address is taken, then freed: nothing answers there
	// until the "operator" starts the API server again on a wake.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	rec := &recorder{}
	woke := make(chan struct{})
	rec.onWake = func() {
		time.Sleep(300 * time.Millisecond)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			return
		}
		startBackend(t, ca, "a.tenants.test", ln)
		close(woke)
	}
	srv := &Server{Activity: rec, HoldTimeout: 30 * time.Second}
	srv.SetTable(BuildTable([]*corev1.ConfigMap{route("ns1", "a", "a.tenants.test", addr, time.Unix(1, 0))}))
	got, err := get(client(ca, startProxy(t, srv)), "https://a.tenants.test/")
	if err != nil {
		t.Fatalf("the held request failed: %v (activity %v)", err, rec.heard())
	}
	if got != "a.tenants.test" {
		t.Errorf("answer = %q", got)
	}
	select {
	case <-woke:
	default:
		t.Error("the request was answered without a wake")
	}
	h := rec.heard()
	if len(h) < 2 || h[0] != "ns1.a wake=false" || h[1] != "ns1.a wake=true" {
		t.Errorf("activity = %v, want a use then a wake request", h)
	}
}

func TestHoldEndsAtTheTimeout(t *testing.T) {
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	ca, err := pki.NewCA("tenants", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{HoldTimeout: 500 * time.Millisecond}
	srv.SetTable(BuildTable([]*corev1.ConfigMap{route("ns1", "a", "a.tenants.test", addr, time.Unix(1, 0))}))
	if _, err := get(client(ca, startProxy(t, srv)), "https://a.tenants.test/"); err == nil {
		t.Error("a request to a backend that never answers succeeded")
	}
}

func TestBuildTable(t *testing.T) {
	old, newer := time.Unix(1, 0), time.Unix(2, 0)
	noBackend := route("ns", "x", "x.d.test", "", old)
	badBackend := route("ns", "y", "y.d.test", "10.0.0.1", old)
	unlabelled := route("ns", "z", "z.d.test", "10.0.0.3:6443", old)
	delete(unlabelled.Labels, LabelRoute)
	tab := BuildTable([]*corev1.ConfigMap{
		route("ns2", "dup", "dup.d.test", "10.0.0.2:6443", newer),
		route("ns1", "dup", "dup.d.test", "10.0.0.1:6443", old),
		noBackend, badBackend, unlabelled,
	})
	for _, tc := range []struct {
		name, backend, lease string
	}{
		{"dup.d.test", "10.0.0.1:6443", "ns1.dup"},
		{"DUP.d.test.", "10.0.0.1:6443", "ns1.dup"},
		{"t-dup.d.test", "10.0.0.1:6443", "ns1.dup"},
		{"x.d.test", "", ""},
		{"y.d.test", "", ""},
		{"z.d.test", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tab.Lookup(tc.name)
			if ok != (tc.backend != "") || got.Backend != tc.backend || got.Lease != tc.lease {
				t.Errorf("Lookup(%q) = %+v, %t; want backend %q lease %q", tc.name, got, ok, tc.backend, tc.lease)
			}
		})
	}
}

func TestValidateDomain(t *testing.T) {
	for _, d := range []string{"tenants.example.com", "kubinception.internal"} {
		if err := ValidateDomain("--domain", d); err != nil {
			t.Errorf("%s: %v", d, err)
		}
	}
	for _, d := range []string{"", "localhost", "Tenants.example.com", "a..b", "*.example.com"} {
		err := ValidateDomain("--domain", d)
		if err == nil || !strings.Contains(err.Error(), "--domain") {
			t.Errorf("%q: error %v, want one naming the flag", d, err)
		}
	}
}
