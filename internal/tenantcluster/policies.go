package tenantcluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
)

// Decisions are made by policy chains, the way cert-manager decides when to
// reissue: small ordered functions, each returning a reason (empty when it
// has nothing to say) and a message, evaluated until one speaks. Each chain
// is table-tested on its own.

// tenancyRecheck is how long an ensured tenancy is trusted before the
// operator checks the etcd user and role again.
const tenancyRecheck = 10 * time.Minute

// tenancyChecks remembers when each tenant's etcd user and role were last
// ensured by this operator process.
type tenancyChecks struct {
	mu      sync.Mutex
	ensured map[types.UID]time.Time
}

// tenancyInput is what the tenancy policies look at.
type tenancyInput struct {
	ensuredAt   time.Time
	known       bool
	now         time.Time
	statusUser  string
	desiredUser string
}

type tenancyPolicy func(in tenancyInput) (reason, message string)

// tenancyPolicies say why a tenancy must be checked in the datastore; when
// none speaks, the last check still holds.
var tenancyPolicies = []tenancyPolicy{
	func(in tenancyInput) (string, string) {
		if !in.known {
			return "NeverChecked", "this operator process has not checked the tenancy yet"
		}
		return "", ""
	},
	func(in tenancyInput) (string, string) {
		if in.statusUser != in.desiredUser {
			return "UserChanged", fmt.Sprintf("status names etcd user %q, the tenant needs %q", in.statusUser, in.desiredUser)
		}
		return "", ""
	},
	func(in tenancyInput) (string, string) {
		if age := in.now.Sub(in.ensuredAt); age >= tenancyRecheck {
			return "Stale", fmt.Sprintf("last checked %s ago; checks are repeated every %s", age.Round(time.Second), tenancyRecheck)
		}
		return "", ""
	},
}

func evaluateTenancy(in tenancyInput) (string, string) {
	for _, p := range tenancyPolicies {
		if reason, message := p(in); reason != "" {
			return reason, message
		}
	}
	return "", ""
}

// needsCheck says why the tenant's etcd user and role must be ensured now,
// or "" when the last check holds.
func (c *tenancyChecks) needsCheck(s *scope) (string, string) {
	c.mu.Lock()
	at, known := c.ensured[s.tc.UID]
	c.mu.Unlock()
	return evaluateTenancy(tenancyInput{ensuredAt: at, known: known, now: s.now, statusUser: s.tc.Status.Datastore.User, desiredUser: s.tenancy.User})
}

func (c *tenancyChecks) mark(uid types.UID, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ensured == nil {
		c.ensured = map[types.UID]time.Time{}
	}
	c.ensured[uid] = now
}

func (c *tenancyChecks) forget(uid types.UID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.ensured, uid)
}

// csrInput is a kubelet serving certificate request as the approval
// policies see it; node is filled in by a lookup only the last policies
// need.
type csrInput struct {
	csr      *certv1.CertificateSigningRequest
	req      *x509.CertificateRequest
	nodeName string
	node     *corev1.Node
	tenant   csrTenant
}

// csrTenant is what the approval policies know of the tenant beyond the
// request: the API server's own names, the ranges no node address may lie
// in, and which node reports which address.
type csrTenant struct {
	// apiServerNames are the DNS names and IPs the API server answers to
	// (its serving certificate's names and the endpoint's host); a node
	// holding a certificate for one of them could pose as the API server
	// to the tenant's pods and to anything dialing the endpoint.
	apiServerNames []string
	// clusterRanges are the tenant's Service and pod ranges: addresses
	// there belong to Services and pods, never to a node.
	clusterRanges []*net.IPNet
	// holders maps every address a Node of the tenant reports to the
	// Nodes reporting it.
	holders map[string][]string
}

// newCSRTenant gathers the tenant's side of the approval policies. Names
// are compared lower-case and without a trailing dot, IPs in canonical
// form.
func newCSRTenant(apiServerNames []string, cidrs []string, nodes []corev1.Node) csrTenant {
	t := csrTenant{holders: map[string][]string{}}
	for _, n := range apiServerNames {
		if n != "" {
			t.apiServerNames = append(t.apiServerNames, canonicalName(n))
		}
	}
	for _, c := range cidrs {
		if _, n, err := net.ParseCIDR(c); err == nil {
			t.clusterRanges = append(t.clusterRanges, n)
		}
	}
	for _, n := range nodes {
		for _, a := range n.Status.Addresses {
			k := canonicalName(a.Address)
			if !slices.Contains(t.holders[k], n.Name) {
				t.holders[k] = append(t.holders[k], n.Name)
			}
		}
	}
	return t
}

// canonicalName is how names and addresses are compared: IPs in their
// canonical form, DNS names lower-case without a trailing dot.
func canonicalName(s string) string {
	if ip := net.ParseIP(s); ip != nil {
		return ip.String()
	}
	return strings.TrimSuffix(strings.ToLower(s), ".")
}

// requestedNames are the request's DNS names and IPs in canonical form.
func (in *csrInput) requestedNames() []string {
	var out []string
	for _, d := range in.req.DNSNames {
		out = append(out, canonicalName(d))
	}
	for _, ip := range in.req.IPAddresses {
		out = append(out, ip.String())
	}
	return out
}

// csrPolicy returns a reason to deny the request, or "" to pass it on.
type csrPolicy func(in *csrInput) (reason, message string)

const nodeUserPrefix = "system:node:"

// csrRequestPolicies check a kubelet serving request on its own: requested
// by system:node:NAME in system:nodes, for CN system:node:NAME, O
// system:nodes, with only server-auth usages and only DNS and IP names,
// none of them the API server's, no IP outside the node network.
// They run in order; the first reason denies.
var csrRequestPolicies = []csrPolicy{
	func(in *csrInput) (string, string) {
		u := in.csr.Spec.Username
		if !strings.HasPrefix(u, nodeUserPrefix) || len(u) == len(nodeUserPrefix) || !slices.Contains(in.csr.Spec.Groups, "system:nodes") {
			return "NotANode", "requester " + u + " is not a node"
		}
		in.nodeName = strings.TrimPrefix(u, nodeUserPrefix)
		return "", ""
	},
	func(in *csrInput) (string, string) {
		block, _ := pem.Decode(in.csr.Spec.Request)
		if block == nil {
			return "Malformed", "request is not PEM"
		}
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil {
			return "Malformed", "request does not parse: " + err.Error()
		}
		in.req = req
		return "", ""
	},
	func(in *csrInput) (string, string) {
		if in.req.Subject.CommonName != in.csr.Spec.Username || !slices.Equal(in.req.Subject.Organization, []string{"system:nodes"}) {
			return "SubjectMismatch", "subject is not the requesting node"
		}
		return "", ""
	},
	func(in *csrInput) (string, string) {
		for _, u := range in.csr.Spec.Usages {
			if u != certv1.UsageServerAuth && u != certv1.UsageDigitalSignature && u != certv1.UsageKeyEncipherment {
				return "UsageNotAllowed", "usage " + string(u) + " is not allowed for a serving certificate"
			}
		}
		return "", ""
	},
	func(in *csrInput) (string, string) {
		if len(in.req.EmailAddresses) > 0 || len(in.req.URIs) > 0 {
			return "NameNotAllowed", "email or URI names are not allowed"
		}
		if len(in.req.DNSNames)+len(in.req.IPAddresses) == 0 {
			return "NoNames", "no names requested"
		}
		return "", ""
	},
	// Whatever the node reports, the API server's names are never a
	// node's: with one a node could serve as kubernetes.default to the
	// tenant's pods.
	func(in *csrInput) (string, string) {
		for _, n := range in.requestedNames() {
			if slices.Contains(in.tenant.apiServerNames, n) {
				return "APIServerName", n + " is a name of the tenant's API server, never of a node"
			}
		}
		return "", ""
	},
	// The tenant has no node range of its own, so "inside the node
	// network" means every address a node can have: not loopback,
	// link-local, multicast or unspecified (addresses every machine has,
	// or none), and not inside the tenant's Service or pod ranges (which
	// belong to Services and pods).
	func(in *csrInput) (string, string) {
		for _, ip := range in.req.IPAddresses {
			if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsInterfaceLocalMulticast() || ip.IsMulticast() || ip.IsUnspecified() {
				return "AddressNotAllowed", "IP " + ip.String() + " is loopback, link-local, multicast or unspecified: not a node's own address"
			}
			for _, r := range in.tenant.clusterRanges {
				if r.Contains(ip) {
					return "AddressInClusterRange", "IP " + ip.String() + " lies in the tenant's Service or pod range " + r.String() + ", not in its node network"
				}
			}
		}
		return "", ""
	},
}

// csrNodePolicies check the request against the Node it names: every DNS
// name and IP must be one of the node's addresses, and no other node's.
var csrNodePolicies = []csrPolicy{
	func(in *csrInput) (string, string) {
		addrs := map[string]bool{}
		for _, a := range in.node.Status.Addresses {
			addrs[a.Address] = true
		}
		for _, d := range in.req.DNSNames {
			if !addrs[d] {
				return "NameNotOfNode", "DNS name " + d + " is not an address of node " + in.nodeName
			}
		}
		for _, ip := range in.req.IPAddresses {
			if !addrs[ip.String()] {
				return "NameNotOfNode", "IP " + ip.String() + " is not an address of node " + in.nodeName
			}
		}
		return "", ""
	},
	// A node reports its own addresses, so two nodes reporting one is
	// one of them claiming the other's: neither gets a certificate for it.
	func(in *csrInput) (string, string) {
		for _, n := range in.requestedNames() {
			for _, holder := range in.tenant.holders[n] {
				if holder != in.nodeName {
					return "AddressOfAnotherNode", n + " is also reported by node " + holder
				}
			}
		}
		return "", ""
	},
}

// csrDecision is what the approval chain concluded.
type csrDecision int

const (
	csrApprove csrDecision = iota
	csrDeny
	// csrWait leaves the request pending: the Node is not there yet.
	csrWait
)

// evaluateCSR runs the approval chain. getNode is called only once the
// request itself passed; a failed lookup is an error to retry and a Node
// that does not exist yet leaves the request pending — neither ever denies.
func evaluateCSR(ctx context.Context, csr *certv1.CertificateSigningRequest, tenant csrTenant, getNode func(context.Context, string) (*corev1.Node, error)) (csrDecision, string, string, error) {
	in := &csrInput{csr: csr, tenant: tenant}
	for _, p := range csrRequestPolicies {
		if reason, message := p(in); reason != "" {
			return csrDeny, reason, message, nil
		}
	}
	node, err := getNode(ctx, in.nodeName)
	if apierrors.IsNotFound(err) {
		return csrWait, "NodeNotRegistered", "node " + in.nodeName + " is not registered yet", nil
	}
	if err != nil {
		return csrWait, "", "", fmt.Errorf("get node %s: %w", in.nodeName, err)
	}
	in.node = node
	for _, p := range csrNodePolicies {
		if reason, message := p(in); reason != "" {
			return csrDeny, reason, message, nil
		}
	}
	return csrApprove, "NamesMatchNode", "names and addresses match the node", nil
}
