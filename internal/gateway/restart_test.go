package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"
	clientv3 "go.etcd.io/etcd/client/v3"
	"k8s.io/apimachinery/pkg/util/wait"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/datastore/datastoretest"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/testenv"
)

// childEnv names the file with the configuration of a gateway the test
// binary runs as a process of its own (see TestMain), so a test can kill
// it the hard way.
const childEnv = "KUBINCEPTION_GATEWAY_TEST_CHILD"

// childConfig is what a child gateway is told.
type childConfig struct {
	Datastore                         datastore.Credentials
	ListenAddress, HTTPAddress        string
	ServingCert, ServingKey, TenantCA string
	QuotaBytes                        int64
}

func TestMain(m *testing.M) {
	if path := os.Getenv(childEnv); path != "" {
		os.Exit(runChild(path))
	}
	os.Exit(m.Run())
}

func runChild(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	var c childConfig
	if err := json.Unmarshal(b, &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	cfg := gateway.DefaultConfig()
	cfg.Datastore = c.Datastore
	cfg.ListenAddress, cfg.HTTPAddress = c.ListenAddress, c.HTTPAddress
	cfg.ServingCertFile, cfg.ServingKeyFile, cfg.TenantCAFile = c.ServingCert, c.ServingKey, c.TenantCA
	cfg.Policy = gateway.StaticPolicy{Default: gateway.Limits{QuotaBytes: c.QuotaBytes}}
	cfg.Logger = funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, time.Now().Format("15:04:05.000"), prefix, args) }, funcr.Options{})
	g, err := gateway.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := g.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// childGateway is a gateway running as a process.
type childGateway struct {
	cmd  *exec.Cmd
	done chan struct{}
}

func (e *testEnv) startChild(t *testing.T, c childConfig, log *os.File) *childGateway {
	t.Helper()
	b, _ := json.Marshal(c)
	path := filepath.Join(e.Dir, "child.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+path)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ch := &childGateway{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(ch.done) }()
	t.Cleanup(ch.kill)
	if err := wait.PollUntilContextTimeout(context.Background(), 50*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-ch.done:
			return false, fmt.Errorf("the gateway exited: %v", cmd.ProcessState)
		default:
		}
		resp, err := http.Get("http://" + c.HTTPAddress + "/readyz")
		if err != nil {
			return false, nil
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	}); err != nil {
		t.Fatalf("the gateway process did not become ready: %v", err)
	}
	return ch
}

// kill ends the process with SIGKILL: no graceful stop, as when a node dies.
func (c *childGateway) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// TestRestart kills the gateway process during a write loop and starts it
// again: every acknowledged write is in the datastore afterwards, usage is
// counted again exactly, and the lease owners recorded before the restart
// still hold.
func TestRestart(t *testing.T) {
	e := newTestEnv(t)
	logPath := filepath.Join(e.Dir, "gateway.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("gateway processes' log:\n%s", b)
		}
	})
	c := childConfig{
		Datastore:     e.Credentials,
		ListenAddress: fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		HTTPAddress:   fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t)),
		ServingCert:   filepath.Join(e.Dir, "serving.crt"),
		ServingKey:    filepath.Join(e.Dir, "serving.key"),
		TenantCA:      filepath.Join(e.Dir, "tenant-ca.crt"),
		QuotaBytes:    1 << 30,
	}
	gw := e.startChild(t, c, log)
	a, b := datastoretest.TenantA, datastoretest.TenantB
	ca := e.client(t, c.ListenAddress, e.tenantCert(t, a.ID))
	cb := e.client(t, c.ListenAddress, e.tenantCert(t, b.ID))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lease, err := ca.Grant(ctx, 300)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	acked := map[string]string{}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	stop := make(chan struct{})
	writerDone := make(chan struct{})
	failures := 0
	go func() {
		defer close(writerDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			key, val := fmt.Sprintf("/registry/configmaps/ns/cm-%05d", i), fmt.Sprintf("v%d", i)
			wctx, wcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err := ca.Put(wctx, key, val)
			wcancel()
			if err != nil {
				// Not acknowledged: it may or may not have been written.
				failures++
				time.Sleep(20 * time.Millisecond)
				continue
			}
			mu.Lock()
			acked[key] = val
			mu.Unlock()
		}
	}()
	waitFor := func(n int) {
		t.Helper()
		if err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
			return ackedCount() >= n, nil
		}); err != nil {
			t.Fatalf("only %d writes acknowledged, waiting for %d", ackedCount(), n)
		}
	}
	waitFor(200)
	gw.kill()
	killedAt := ackedCount()
	gw = e.startChild(t, c, log)
	waitFor(killedAt + 200)
	close(stop)
	<-writerDone
	t.Logf("%d writes acknowledged, %d killed at, %d not acknowledged", len(acked), killedAt, failures)

	for key, val := range acked {
		resp, err := e.Root.Get(ctx, a.Prefix+key)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != val {
			t.Errorf("acknowledged write %s=%s is not in the datastore: %v %v", key, val, resp, err)
		}
	}
	direct, err := datastore.TenantUsage(ctx, e.Root, a)
	if err != nil {
		t.Fatal(err)
	}
	var all []gateway.TenantUsage
	if err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		resp, err := http.Get("http://" + c.HTTPAddress + "/usage")
		if err != nil {
			return false, nil
		}
		defer resp.Body.Close()
		all = nil
		if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
			return false, nil
		}
		return len(all) == 1 && all[0].Keys == direct.Keys && all[0].Bytes == direct.Bytes, nil
	}); err != nil {
		t.Errorf("usage after the restart = %+v, direct count %+v", all, direct)
	}
	if _, err := cb.Revoke(ctx, lease.ID); !datastoretest.IsDenied(err) {
		t.Errorf("tenant B revoking A's lease after the restart: want permission denied, got %v", err)
	}
	if _, err := ca.Revoke(ctx, lease.ID); err != nil {
		t.Errorf("tenant A revoking its lease after the restart: %v", err)
	}
	if resp, err := e.Root.Get(ctx, datastore.LeaseOwnersPrefix(a.ID), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || resp.Count != 0 {
		t.Errorf("the owner record outlived its revoked lease: %v %v", resp, err)
	}
}
