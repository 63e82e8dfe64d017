package migration_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/migration"
	"kubinception.dev/kubinception/internal/testenv"
)

const report = "../results/migration.md"

// cases are the tenants moved: objects in the tenant, and how far the
// source's revision is ahead of the destination's (other tenants' writes),
// which the revision raise must cover.
var cases = []struct{ objects, ahead int }{{1000, 5000}, {10000, 5000}, {1000, 50000}}

const objectBytes = 1200

type row struct {
	objects, ahead      int
	res                 migration.Result
	writes, failed      int
	slowest, p99, total time.Duration
}

// TestMigrationBenchmark moves tenants under a continuous writer. It
// asserts no timing.
func TestMigrationBenchmark(t *testing.T) {
	if os.Getenv("KUBINCEPTION_BENCH") != "1" {
		t.Skip("KUBINCEPTION_BENCH is not 1: this benchmark runs real etcds and gateways for a few minutes and rewrites bench/results/migration.md; run it with KUBINCEPTION_BENCH=1 go test -v -timeout 30m ./bench/migration")
	}
	load0 := benchkit.LoadAverage()
	var rows []row
	for i, c := range cases {
		rows = append(rows, move(t, i, c.objects, c.ahead))
	}
	if err := benchkit.WriteReport(report, markdown(rows, load0, benchkit.LoadAverage())); err != nil {
		t.Fatal(err)
	}
}

func move(t *testing.T, i, objects, ahead int) row {
	src, dst := testenv.StartGatewayDatastore(t), testenv.StartGatewayDatastore(t)
	cfg := func(c *gateway.Config) { c.Policy = gateway.StaticPolicy{}; c.CompactionInterval = 0 }
	gs := []*testenv.Gateway{src.StartGateway(t, cfg), src.StartGateway(t, cfg)}
	gd := dst.StartGateway(t, cfg)
	ctx := context.Background()
	id := fmt.Sprintf("bbbbbbbb-0000-0000-0000-%012d", i)
	// Other tenants' history: the source is ahead by `ahead` revisions.
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Go(func() {
			for j := w; j < ahead; j += 16 {
				if _, err := src.Root.Put(ctx, fmt.Sprintf("/tenants/cccccccc-0000-0000-0000-000000000000/k-%d", j%100), "x"); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	value := strings.Repeat("v", objectBytes)
	for j := 0; j < objects; j += 100 {
		var ops []clientv3.Op
		for k := j; k < min(j+100, objects); k++ {
			ops = append(ops, clientv3.OpPut(fmt.Sprintf("/tenants/%s/registry/configmaps/data/cm-%06d", id, k), value))
		}
		if _, err := src.Root.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	cli, err := src.TenantClient(gs[0].Addr(), id)
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	wctx, stop := context.WithCancel(ctx)
	var mu sync.Mutex
	var lat []time.Duration
	failed := 0
	var wdone sync.WaitGroup
	wdone.Go(func() {
		for k := 0; wctx.Err() == nil; k++ {
			start := time.Now()
			_, err := cli.Put(wctx, fmt.Sprintf("/registry/configmaps/data/w-%06d", k), value)
			mu.Lock()
			if err != nil {
				if wctx.Err() == nil {
					failed++
				}
			} else {
				lat = append(lat, time.Since(start))
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	time.Sleep(time.Second)
	kp, err := dst.TenantCert(id)
	if err != nil {
		t.Fatal(err)
	}
	m := &migration.Migrator{
		TenantID: id, Source: src.Root, Destination: dst.Root, Log: logr.Discard(),
		Target: gateway.ForwardTarget{Endpoint: gd.Addr(), CAPEM: dst.TenantCA.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM},
	}
	start := time.Now()
	res, err := m.Run(ctx, migration.PhasePending)
	total := time.Since(start)
	time.Sleep(time.Second)
	stop()
	wdone.Wait()
	if err != nil || res.Phase != migration.PhaseCompleted {
		t.Fatalf("migration of %d objects: %s, %v (%v)", objects, res.Phase, err, res.Err)
	}
	slices.Sort(lat)
	r := row{objects: objects, ahead: ahead, res: res, writes: len(lat), failed: failed, total: total}
	if len(lat) > 0 {
		r.slowest, r.p99 = lat[len(lat)-1], lat[len(lat)*99/100]
	}
	t.Logf("%d objects, source %d revisions ahead: pause %s, total %s, %d bump writes; writer %d writes, %d failed, p99 %s, slowest %s",
		objects, ahead, res.Pause, total, res.BumpWrites, len(lat), failed, r.p99, r.slowest)
	return r
}

func markdown(rows []row, load0, load1 string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Live migration of a tenant between datastores\n\n%s, %s, load average %s before and %s after.\n\n", benchkit.Now(), benchkit.Machine(), load0, load1)
	b.WriteString("`KUBINCEPTION_BENCH=1 go test -v -timeout 30m ./bench/migration`: two real etcds, each behind its gateway (two replicas on the source), ")
	fmt.Fprintf(&b, "objects of %d bytes; a client writes one key every 5 ms through a source gateway throughout, and goes on through the switch (forwarded). ", objectBytes)
	b.WriteString("The pause is from asking every source gateway to hold the tenant's writes to the move written (the goal is 2 s); ")
	b.WriteString("the raise is the writes that lift the destination's revision above the source's (most of them before the pause).\n\n")
	b.WriteString("| objects | source ahead by (revisions) | copy | catch-up | **pause** | total | raise writes | writer: writes / failed | writer p99 | writer slowest |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %d | %s | %s | **%s** | %s | %d | %d / %d | %s | %s |\n", r.objects, r.ahead,
			benchkit.Millis(r.res.Copy), benchkit.Millis(r.res.CatchUp), benchkit.Millis(r.res.Pause), benchkit.Millis(r.total),
			r.res.BumpWrites, r.writes, r.failed, benchkit.Millis(r.p99), benchkit.Millis(r.slowest))
	}
	return b.String()
}
