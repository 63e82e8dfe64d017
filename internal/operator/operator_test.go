package operator

import (
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// TestBadProtectedNetworksStopTheStart: a list the operator cannot read
// stops it before it connects anywhere, with an error naming the flag;
// it never runs with tunnel-off control planes silently unfenced.
func TestBadProtectedNetworksStopTheStart(t *testing.T) {
	for _, nets := range [][]string{{"10.200.0.0/16", "admin-node"}, {"fd00::/8"}, {"0.0.0.0/0"}} {
		o := DefaultOptions()
		o.ProtectedNetworks = nets
		// An address nothing listens on: reaching it would fail later,
		// with another error.
		_, _, err := NewManager(&rest.Config{Host: "https://127.0.0.1:1"}, o)
		if err == nil || !strings.Contains(err.Error(), "--protected-networks") {
			t.Errorf("NewManager with protected networks %q: %v, want an error naming --protected-networks", nets, err)
		}
	}
}
