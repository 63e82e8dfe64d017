package tenantcluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
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
}

// csrPolicy returns a reason to deny the request, or "" to pass it on.
type csrPolicy func(in *csrInput) (reason, message string)

const nodeUserPrefix = "system:node:"

// csrRequestPolicies check a kubelet serving request on its own: requested
// by system:node:NAME in system:nodes, for CN system:node:NAME, O
// system:nodes, with only server-auth usages and only DNS and IP names.
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
}

// csrNodePolicies check the request against the Node it names: every DNS
// name and IP must be one of the node's addresses.
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
func evaluateCSR(ctx context.Context, csr *certv1.CertificateSigningRequest, getNode func(context.Context, string) (*corev1.Node, error)) (csrDecision, string, string, error) {
	in := &csrInput{csr: csr}
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
