package tunnel

import (
	"crypto/tls"
	"slices"
	"testing"
)

// TestWithProtosReachesPerHandshakeConfigs: a server configuration that
// reads its files at every handshake (GetConfigForClient) still offers
// the listener's protocols, or a load balancer's HTTP/2 connection to the
// client port would find no h2 and fail.
func TestWithProtosReachesPerHandshakeConfigs(t *testing.T) {
	base := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return &tls.Config{MinVersion: tls.VersionTLS12}, nil
	}}
	c := withProtos(base, "h2", "http/1.1")
	if !slices.Equal(c.NextProtos, []string{"h2", "http/1.1"}) {
		t.Fatalf("NextProtos = %v", c.NextProtos)
	}
	per, err := c.GetConfigForClient(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(per.NextProtos, []string{"h2", "http/1.1"}) {
		t.Fatalf("the per-handshake configuration offers %v", per.NextProtos)
	}
	if base.NextProtos != nil {
		t.Fatal("withProtos changed the configuration it was given")
	}
	if plain := withProtos(&tls.Config{}, "http/1.1"); plain.GetConfigForClient != nil || !slices.Equal(plain.NextProtos, []string{"http/1.1"}) {
		t.Fatalf("a static configuration: %+v", plain.NextProtos)
	}
}
