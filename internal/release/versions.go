package release

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// DefaultKubernetesVersion is the Kubernetes release built and run when none
// is asked for.
const DefaultKubernetesVersion = "v1.35.4"

// EtcdVersion is the etcd release built for the admin cluster's etcd and for
// the shared datastore.
const EtcdVersion = "v3.6.16"

// CoreDNSVersion is the CoreDNS release every tenant's cluster DNS runs.
const CoreDNSVersion = "v1.14.7"

// supportedMinors lists the Kubernetes minors the multi-call binary builds
// for. The admin node runs containerd 1.x, which Kubernetes supports up to
// 1.35, and two minors are needed to test upgrades.
var supportedMinors = []int{34, 35}

var versionPattern = regexp.MustCompile(`^v1\.(\d+)\.(\d+)$`)

// ValidateKubernetesVersion checks that v names a Kubernetes release this
// project builds, and says which to use when it does not.
func ValidateKubernetesVersion(v string) error {
	m := versionPattern.FindStringSubmatch(v)
	if m == nil {
		return fmt.Errorf("version %q is not a Kubernetes release: use the form v1.MINOR.PATCH, for example --version %s", v, DefaultKubernetesVersion)
	}
	minor, _ := strconv.Atoi(m[1])
	for _, s := range supportedMinors {
		if s == minor {
			return nil
		}
	}
	return fmt.Errorf("Kubernetes %s is not supported: kubinception builds %s; use --version %s or another patch release of a supported minor",
		v, SupportedMinorsText(), DefaultKubernetesVersion)
}

// SupportedMinorsText is the list of supported minors as a person reads it,
// e.g. "v1.34.x and v1.35.x".
func SupportedMinorsText() string {
	parts := make([]string, len(supportedMinors))
	for i, m := range supportedMinors {
		parts[i] = fmt.Sprintf("v1.%d.x", m)
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}

// SupportedMinors returns the supported Kubernetes minors, oldest first.
func SupportedMinors() []int { return slices.Clone(supportedMinors) }

// SupportedVersionPattern is a regular expression (RE2, so the same for Go
// and for CEL's matches()) that matches exactly the releases
// ValidateKubernetesVersion accepts. The TenantCluster CRD's rule on
// spec.version is built from it.
func SupportedVersionPattern() string {
	minors := make([]string, len(supportedMinors))
	for i, m := range supportedMinors {
		minors[i] = strconv.Itoa(m)
	}
	return `^v1\.(` + strings.Join(minors, "|") + `)\.[0-9]+$`
}

// StagingVersion maps a Kubernetes release to the version its staging
// modules (k8s.io/api, k8s.io/client-go, ...) are published under:
// v1.35.4 becomes v0.35.4.
func StagingVersion(kubernetesVersion string) string {
	return "v0" + strings.TrimPrefix(kubernetesVersion, "v1")
}

// CalicoVersion is the Calico release whose Felix enforces NetworkPolicy
// (in the local admin cluster and as the tenants' networkPolicy addon) and
// whose CNI plugin wires pods for it.
const CalicoVersion = "v3.28.5"

// CalicoModuleVersion is the github.com/projectcalico/calico module version
// CalicoVersion is built from: the Go module proxy serves the release-v3.28
// branch only as this pseudo-version (the repository has no module tags).
const CalicoModuleVersion = "v1.11.0-cni-plugin.0.20250813170300-a0db560f0520"

// CalicoAPIVersion is the github.com/projectcalico/api module that branch
// compiles against; upstream replaces it with a nested directory the module
// zip does not contain, so the build names it.
const CalicoAPIVersion = "v0.0.0-20240708202104-e3f70b269c2c"
