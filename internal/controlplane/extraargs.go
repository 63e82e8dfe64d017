package controlplane

import (
	"fmt"
	"slices"
	"strings"
)

// AllowedAPIServerFlags are the only flags spec.controlPlane.extraArgs may
// set on a tenant's API server: none of them can weaken authentication,
// authorization, TLS, storage or encryption, or point the API server at
// a file of the pod. The CRD refuses every other flag with the same list
// (its CEL rule on extraArgs); docs/api.md says why each is there and why
// the others are not. Keep the three in step.
var AllowedAPIServerFlags = []string{
	// OIDC adds an authenticator the tenant's admin chooses; it removes
	// none and grants nothing RBAC does not.
	"--oidc-issuer-url", "--oidc-client-id", "--oidc-username-claim", "--oidc-username-prefix",
	"--oidc-groups-claim", "--oidc-groups-prefix", "--oidc-required-claim", "--oidc-signing-algs",
	// Load and timing of the tenant's own API server.
	"--max-requests-inflight", "--max-mutating-requests-inflight", "--request-timeout", "--min-request-timeout",
	"--default-watch-cache-size", "--watch-cache-sizes", "--event-ttl", "--goaway-chance", "--delete-collection-workers",
	// How often the API server compacts the tenant's history: the gateway
	// keeps each tenant's compaction to its own view, and no other etcd
	// flag (servers, certificates, prefix) is allowed.
	"--etcd-compaction-interval",
	// The tenant's own nodes and Services.
	"--default-not-ready-toleration-seconds", "--default-unreachable-toleration-seconds", "--service-node-port-range",
}

// ExtraArgsError names an extra argument the allow-list refuses.
type ExtraArgsError struct {
	Flag string
}

func (e *ExtraArgsError) Error() string {
	return fmt.Sprintf("spec.controlPlane.extraArgs: flag %s is not allowed: only flags that cannot weaken authentication, authorization, TLS, storage or encryption may be set (the allowed list is in docs/api.md, extraArgs)", e.Flag)
}

// ValidateExtraArgs refuses the first argument that is not "--flag" or
// "--flag=value" with an allowed flag. The API server refuses them too;
// this catches objects stored before its rule existed.
func ValidateExtraArgs(args []string) error {
	for _, a := range args {
		flag, _, _ := strings.Cut(a, "=")
		if !strings.HasPrefix(flag, "--") || !slices.Contains(AllowedAPIServerFlags, flag) {
			return &ExtraArgsError{Flag: flag}
		}
	}
	return nil
}
