package netpolicy

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseProtectedNetworks(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      []string
		want    []string
		wantErr string
	}{
		{name: "none", in: nil, want: []string{}},
		{name: "the local admin cluster's", in: []string{"10.200.0.0/16", "10.199.0.1/32"}, want: []string{"10.199.0.1/32", "10.200.0.0/16"}},
		{name: "a bare address is a /32", in: []string{" 10.199.0.1 "}, want: []string{"10.199.0.1/32"}},
		{name: "host bits cleared", in: []string{"10.200.7.9/16"}, want: []string{"10.200.0.0/16"}},
		{name: "repeats and networks inside another dropped",
			in:   []string{"10.200.1.0/24", "192.168.1.1", "10.200.0.0/16", "10.200.0.0/16", "10.200.255.255/32", "10.201.0.0/16"},
			want: []string{"10.200.0.0/16", "10.201.0.0/16", "192.168.1.1/32"}},
		{name: "not a CIDR", in: []string{"10.200.0.0/33"}, wantErr: `--protected-networks: "10.200.0.0/33" is not an IPv4 CIDR`},
		{name: "a name", in: []string{"admin-node"}, wantErr: `--protected-networks: "admin-node" is not an IPv4 CIDR`},
		{name: "empty entry", in: []string{"10.200.0.0/16", ""}, wantErr: `--protected-networks: "" is not an IPv4 CIDR`},
		{name: "IPv6", in: []string{"fd00::/8"}, wantErr: `"fd00::/8" is not an IPv4 CIDR`},
		{name: "IPv4-mapped IPv6", in: []string{"::ffff:10.0.0.1"}, wantErr: "is not an IPv4 CIDR"},
		{name: "everything", in: []string{"0.0.0.0/0"}, wantErr: `--protected-networks: "0.0.0.0/0" covers every address`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseProtectedNetworks(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("ParseProtectedNetworks(%q) = %v, %v; want an error containing %q", tc.in, got, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			s := []string{}
			for _, p := range got {
				s = append(s, p.String())
			}
			if diff := cmp.Diff(tc.want, s); diff != "" {
				t.Errorf("ParseProtectedNetworks(%q) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

// FuzzParseProtectedNetworks: whatever is accepted renders as exceptions
// Kubernetes accepts under 0.0.0.0/0 (IPv4, masked, narrower than /0),
// sorted, none inside another, covering exactly the addresses given, and
// parsing the result again gives it back.
func FuzzParseProtectedNetworks(f *testing.F) {
	for _, s := range []string{"10.200.0.0/16,10.199.0.1/32", "10.200.1.0/24,10.200.0.0/16", "10.0.0.1", "0.0.0.0/0", "fd00::/8", "1.2.3.4/33,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		in := strings.Split(list, ",")
		got, err := ParseProtectedNetworks(in)
		if err != nil {
			if !strings.HasPrefix(err.Error(), ProtectedNetworksFlag+": ") {
				t.Errorf("error %q does not name the flag", err)
			}
			return
		}
		var again []string
		for i, p := range got {
			if !p.Addr().Is4() || p != p.Masked() || p.Bits() == 0 {
				t.Fatalf("%v: %s is not a masked IPv4 network narrower than /0", got, p)
			}
			if i > 0 && (got[i-1].Addr().Compare(p.Addr()) >= 0 || got[i-1].Overlaps(p)) {
				t.Fatalf("%v: %s and %s out of order or overlapping", got, got[i-1], p)
			}
			again = append(again, p.String())
		}
		for _, s := range in {
			p, err := parseIPv4Prefix(strings.TrimSpace(s))
			if err != nil {
				t.Fatalf("%q accepted but does not parse alone: %v", s, err)
			}
			if !covered(got, p.Masked()) {
				t.Fatalf("%v does not cover %s", got, p)
			}
		}
		back, err := ParseProtectedNetworks(again)
		if err != nil || !slices.Equal(back, got) {
			t.Fatalf("parsing %v again gave %v, %v", again, back, err)
		}
	})
}

func covered(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}
