package netpolicy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// ProtectedNetworksFlag is the operator's and `kubinception install`'s
// flag naming the admin cluster's own networks; parse errors name it.
const ProtectedNetworksFlag = "--protected-networks"

// ParseProtectedNetworks reads the admin cluster's own networks (its pod
// ranges, its nodes' addresses) that a control plane without the tunnel
// may not reach: IPv4 CIDRs, or bare addresses meaning /32. The result is
// normalised so that the rendered policies do not depend on how the list
// was written: host bits cleared, sorted, with repeats and networks inside
// another left out. Every network must be narrower than 0.0.0.0/0: it
// becomes an exception of an ipBlock whose cidr is 0.0.0.0/0, which
// Kubernetes accepts only for strict subsets (and a control plane that may
// reach nothing at all needs the tunnel, not this list).
func ParseProtectedNetworks(cidrs []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(cidrs))
	for _, s := range cidrs {
		s = strings.TrimSpace(s)
		p, err := parseIPv4Prefix(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %q is not an IPv4 CIDR or address (%v): give the admin cluster's pod ranges and node addresses, such as 10.200.0.0/16,10.199.0.1/32", ProtectedNetworksFlag, s, err)
		}
		if p.Bits() == 0 {
			return nil, fmt.Errorf("%s: %q covers every address: list only the admin cluster's own networks (pod ranges, node addresses)", ProtectedNetworksFlag, s)
		}
		out = append(out, p.Masked())
	}
	return normalise(out), nil
}

func parseIPv4Prefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, err
		}
		if !a.Is4() {
			return netip.Prefix{}, fmt.Errorf("not IPv4")
		}
		return netip.PrefixFrom(a, 32), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("not IPv4")
	}
	return p, nil
}

// normalise sorts masked prefixes by address, wider first, and keeps only
// those no earlier one contains.
func normalise(ps []netip.Prefix) []netip.Prefix {
	slices.SortFunc(ps, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	out := ps[:0]
	for _, p := range ps {
		// Sorted by address, a network inside another comes after it and
		// before any network that does not contain it: the last kept one
		// is the only candidate.
		if n := len(out); n > 0 && out[n-1].Contains(p.Addr()) && out[n-1].Bits() <= p.Bits() {
			continue
		}
		out = append(out, p)
	}
	return out
}
