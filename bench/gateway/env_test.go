package gateway_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/testenv"
)

// backendQuota is the datastore's backend quota: floods write gigabytes of
// history between the compactions the benchmark makes, more than etcd's
// 2 GiB default.
const backendQuota = 8 << 30

// env is the datastore (one etcd with authentication on) and the files
// every gateway of the benchmark reads (testenv.GatewayDatastore).
type env struct {
	*testenv.GatewayDatastore
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return &env{testenv.StartGatewayDatastore(t, fmt.Sprintf("--quota-backend-bytes=%d", backendQuota))}
}

// tenantID is the UID of tenant n of a group of the benchmark: a UID's
// fixed length, as datastore.TenancyFor requires.
func tenantID(group, n int) string {
	return fmt.Sprintf("bench%03d-0000-0000-0000-%012d", group, n)
}

// compactAll compacts the datastore at its current revision and
// defragments it, so a flood's history does not weigh on what follows.
func (e *env) compactAll(ctx context.Context) error {
	resp, err := e.Root.Get(ctx, "/", clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("read the datastore's revision: %w", err)
	}
	if _, err := e.Root.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil && !strings.Contains(err.Error(), "compacted") {
		return fmt.Errorf("compact the datastore at %d: %w", resp.Header.Revision, err)
	}
	if _, err := e.Root.Defragment(ctx, e.Etcd.Endpoint); err != nil {
		return fmt.Errorf("defragment the datastore: %w", err)
	}
	return nil
}

// emptyTenants deletes every tenant's keys and compacts them away.
func (e *env) emptyTenants(ctx context.Context) error {
	if _, err := e.Root.Delete(ctx, datastore.TenantsPrefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("delete the tenants' keys: %w", err)
	}
	return e.compactAll(ctx)
}

// scrape reads the gateway's /metrics at httpAddr and returns the value of
// every sample whose name and labels start with prefix, summed (0 when
// none matches).
func scrape(ctx context.Context, httpAddr, prefix string) (float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", httpAddr, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, prefix) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("metric line %q: %w", line, err)
		}
		sum += v
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("scrape %s: %w", httpAddr, err)
	}
	return sum, nil
}
