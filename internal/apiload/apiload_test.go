package apiload

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
)

func TestSummarize(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var samples []Sample
	for i := range 100 {
		samples = append(samples, Sample{Start: t0.Add(time.Duration(i) * time.Second), Latency: time.Duration(i+1) * time.Millisecond, Op: "get"})
	}
	samples = append(samples, Sample{Start: t0.Add(50 * time.Second), Op: "patch", Err: errors.New("connection refused")})

	all := Summarize(samples, t0, time.Time{})
	if all.Sent != 101 || all.Failed != 1 || len(all.Failures) != 1 || !strings.Contains(all.Failures[0], "patch") {
		t.Errorf("all: %+v", all)
	}
	if all.P50 != 51*time.Millisecond || all.P99 != 100*time.Millisecond || all.Worst != 100*time.Millisecond {
		t.Errorf("all latencies: %s", all)
	}
	window := Summarize(samples, t0.Add(10*time.Second), t0.Add(20*time.Second))
	if window.Sent != 10 || window.Failed != 0 || window.Worst != 20*time.Millisecond {
		t.Errorf("window [10s, 20s): %s", window)
	}
}

func TestLoadReadsAndWrites(t *testing.T) {
	cs := fake.NewClientset()
	l, err := Start(context.Background(), cs, Options{Namespace: "default", Name: "probe", Clients: 2, Pause: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cm, err := cs.CoreV1().ConfigMaps("default").Get(context.Background(), "probe", metav1.GetOptions{})
		if err == nil && cm.Data["client-0"] != "" && cm.Data["client-1"] != "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the clients wrote nothing: %+v, %v", cm, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	samples := l.Stop()
	ops := map[string]int{}
	for _, s := range samples {
		if s.Err != nil {
			t.Errorf("%s failed: %v", s.Op, s.Err)
		}
		ops[s.Op]++
	}
	if ops["get"] == 0 || ops["patch"] == 0 {
		t.Errorf("requests by kind: %v, want gets and patches", ops)
	}
	if n := len(l.Stop()); n != len(samples) {
		t.Errorf("samples after Stop grew from %d to %d", len(samples), n)
	}
}

// A fresh-connection client dials for every request; the default client
// keeps its connection.
func TestFreshConnections(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"probe","namespace":"default"}}`)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.StartTLS()
	defer srv.Close()
	caPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	rc := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: caPEM}}
	count := func(cs kubernetes.Interface) int {
		t.Helper()
		mu.Lock()
		before := conns
		mu.Unlock()
		for range 3 {
			if _, err := cs.CoreV1().ConfigMaps("default").Get(context.Background(), "probe", metav1.GetOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return conns - before
	}
	fresh, err := FreshConnections(rc)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(fresh); n != 3 {
		t.Errorf("3 requests of a fresh-connection client opened %d connections, want 3", n)
	}
	shared, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	if n := count(shared); n != 1 {
		t.Errorf("3 requests of a default client opened %d connections, want 1", n)
	}
}
