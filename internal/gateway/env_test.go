package gateway_test

import (
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/testenv"
)

// testEnv is a real etcd with authentication on and the files a gateway
// in front of it needs (testenv.GatewayDatastore).
type testEnv struct {
	*testenv.GatewayDatastore
}

// runningGateway is a gateway served in the test process.
type runningGateway = testenv.Gateway

func newTestEnv(t *testing.T, etcdArgs ...string) *testEnv {
	t.Helper()
	return &testEnv{testenv.StartGatewayDatastore(t, etcdArgs...)}
}

// startGateway runs a gateway until the test ends, with no limits and no
// compaction of its own; mutate adjusts its configuration further.
func (e *testEnv) startGateway(t *testing.T, mutate func(*gateway.Config)) *runningGateway {
	t.Helper()
	return e.StartGateway(t, func(c *gateway.Config) {
		c.Policy = gateway.StaticPolicy{}
		c.CompactionInterval = 0
		if mutate != nil {
			mutate(c)
		}
	})
}

// tenantCert issues a client certificate for tenant id from the tenant
// CA, as the operator does for each tenant API server.
func (e *testEnv) tenantCert(t *testing.T, id string) *pki.KeyPair {
	t.Helper()
	kp, err := e.TenantCert(id)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

// client connects to addr with a client certificate, trusting the
// tenant CA, until the test ends.
func (e *testEnv) client(t *testing.T, addr string, kp *pki.KeyPair) *clientv3.Client {
	t.Helper()
	tc, err := e.ClientTLS(kp)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := testenv.DialGateway(addr, tc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// tenantClient connects to the gateway as tenant id's API server does.
func (e *testEnv) tenantClient(t *testing.T, g *runningGateway, id string) *clientv3.Client {
	t.Helper()
	return e.client(t, g.Addr(), e.tenantCert(t, id))
}
