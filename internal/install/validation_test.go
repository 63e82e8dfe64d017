package install_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/release"
	"kubinception.dev/kubinception/internal/testenv"
)

// These tests send TenantClusters and Datastores to a real kube-apiserver
// with the CRDs `kubinception install` applies, and check what it answers:
// the field and message of every refusal, so a rule that stops firing, or
// fires on the wrong field, fails here rather than in front of a user.

func TestMain(m *testing.M) { testenv.Main(m) }

// Messages of the CRDs' rules, as docs/api.md lists them.
const (
	msgNameLength   = "metadata.name must be at most 40 characters: it prefixes the names of the control plane's objects"
	msgNameLabel    = "metadata.name must be a DNS label: lower-case letters, digits and '-', starting with a letter"
	msgServiceCIDR  = "network.serviceCIDR must be an IPv4 CIDR such as 10.96.0.0/16"
	msgPodCIDR      = "network.podCIDR must be an IPv4 CIDR such as 10.244.0.0/16"
	msgDNSIP        = "network.dnsServiceIP must be an IPv4 address such as 10.96.0.10"
	msgDNSInside    = "network.dnsServiceIP must lie inside network.serviceCIDR"
	msgOverlap      = "network.serviceCIDR and network.podCIDR must not overlap"
	msgNetImmutable = "network is immutable: create a new cluster to change address ranges"
	msgQuota        = "datastore.quotaBytes must be at least 1Mi: a control plane alone needs about 1Mi"
)

// cause is one field error the API server returned.
type cause struct {
	Type    metav1.CauseType
	Field   string
	Message string
}

// invalid is the cause a rule on a scalar field returns: it shows the
// refused value (quoted when a string).
func invalid(field string, value any, msg string) cause {
	shown := fmt.Sprint(value)
	if s, ok := value.(string); ok {
		shown = fmt.Sprintf("%q", s)
	}
	return cause{Type: metav1.CauseTypeFieldValueInvalid, Field: field, Message: "Invalid value: " + shown + ": " + msg}
}

// forbiddenArg is the cause of an extra argument outside the allow-list.
func forbiddenArg(flag string) cause {
	return cause{Type: metav1.CauseType("FieldValueForbidden"), Field: "spec.controlPlane.extraArgs",
		Message: "Forbidden: " + (&controlplane.ExtraArgsError{Flag: flag}).Error()}
}

// notChecked is the cause the API server adds when a schema error (type,
// enum, size) keeps it from evaluating the rules on the whole object.
var notChecked = cause{Type: metav1.CauseTypeFieldValueInvalid, Field: "<nil>",
	Message: "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"}

// invalidObject is the cause a rule on an object returns ("<nil>" is the
// field of a rule on the whole object).
func invalidObject(field, msg string) cause {
	return cause{Type: metav1.CauseTypeFieldValueInvalid, Field: field, Message: "Invalid value: " + msg}
}

// causes are the field errors of an Invalid answer, sorted; nil when err
// is nil. Any other error fails the test.
func causes(t *testing.T, err error) []cause {
	t.Helper()
	if err == nil {
		return nil
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) || status.Status().Details == nil {
		t.Fatalf("want an Invalid answer with field causes, got %v", err)
	}
	var out []cause
	for _, c := range status.Status().Details.Causes {
		out = append(out, cause{Type: c.Type, Field: c.Field, Message: c.Message})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Field != out[j].Field {
			return out[i].Field < out[j].Field
		}
		return out[i].Message < out[j].Message
	})
	return out
}

// validTenant has every field the rules look at set to a valid value.
func validTenant(name string) *kv1.TenantCluster {
	return &kv1.TenantCluster{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: kv1.TenantClusterSpec{
			Version:   release.DefaultKubernetesVersion,
			Datastore: kv1.DatastorePlacement{Name: "default"},
			Network:   kv1.NetworkSpec{ServiceCIDR: "10.96.0.0/16", PodCIDR: "10.244.0.0/16", ClusterDomain: "cluster.local", DNSServiceIP: "10.96.0.10"},
		},
	}
}

// network is a NetworkSpec from its three ranges' worth of addresses.
func network(serviceCIDR, podCIDR, dnsIP string) kv1.NetworkSpec {
	return kv1.NetworkSpec{ServiceCIDR: serviceCIDR, PodCIDR: podCIDR, ClusterDomain: "cluster.local", DNSServiceIP: dnsIP}
}

func TestTenantClusterCreateValidation(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	cases := []struct {
		name   string
		tcName string // metadata.name, when the case is about it
		mutate func(*kv1.TenantCluster)
		want   []cause // nil: accepted
	}{
		{name: "valid", mutate: func(*kv1.TenantCluster) {}},

		{name: "name of 40 characters", tcName: "a" + strings.Repeat("b", 39)},
		{name: "name of 41 characters", tcName: "a" + strings.Repeat("b", 40), want: []cause{invalidObject("<nil>", msgNameLength)}},
		{name: "name with a dot", tcName: "demo.one", want: []cause{invalidObject("<nil>", msgNameLabel)}},
		{name: "name starting with a digit", tcName: "1demo", want: []cause{invalidObject("<nil>", msgNameLabel)}},
		{name: "name with dashes and digits", tcName: "demo-2-b"},

		{name: "service CIDR without a prefix length", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.ServiceCIDR = "10.96.0.0" },
			want: []cause{invalid("spec.network.serviceCIDR", "10.96.0.0", msgServiceCIDR)}},
		{name: "service CIDR not an address", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.ServiceCIDR = "services" },
			want: []cause{invalid("spec.network.serviceCIDR", "services", msgServiceCIDR)}},
		{name: "IPv6 service CIDR", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Network = network("fd00:10:96::/112", "10.244.0.0/16", "fd00:10:96::a")
		}, want: []cause{invalid("spec.network.dnsServiceIP", "fd00:10:96::a", msgDNSIP), invalid("spec.network.serviceCIDR", "fd00:10:96::/112", msgServiceCIDR)}},
		{name: "pod CIDR not a CIDR", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.PodCIDR = "10.244.0.0/33" },
			want: []cause{invalid("spec.network.podCIDR", "10.244.0.0/33", msgPodCIDR)}},
		{name: "IPv6 pod CIDR", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.PodCIDR = "fd00:10:244::/56" },
			want: []cause{invalid("spec.network.podCIDR", "fd00:10:244::/56", msgPodCIDR)}},

		{name: "DNS IP not an address", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.DNSServiceIP = "10.96.0" },
			want: []cause{invalid("spec.network.dnsServiceIP", "10.96.0", msgDNSIP)}},
		{name: "DNS IP outside the service range", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.DNSServiceIP = "10.97.0.10" },
			want: []cause{invalidObject("spec.network", msgDNSInside)}},
		{name: "DNS IP in the pod range", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.DNSServiceIP = "10.244.0.10" },
			want: []cause{invalidObject("spec.network", msgDNSInside)}},
		{name: "DNS IP at the end of a small service range", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Network = network("10.96.0.0/24", "10.244.0.0/16", "10.96.0.255")
		}},

		{name: "pod range inside the service range", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.PodCIDR = "10.96.128.0/17" },
			want: []cause{invalidObject("spec.network", msgOverlap)}},
		{name: "service range inside the pod range", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Network = network("10.244.1.0/24", "10.244.0.0/16", "10.244.1.10")
		}, want: []cause{invalidObject("spec.network", msgOverlap)}},
		{name: "equal ranges", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.PodCIDR = "10.96.0.0/16" },
			want: []cause{invalidObject("spec.network", msgOverlap)}},
		{name: "pod range given with host bits, covering the service range", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.PodCIDR = "10.1.2.3/8" },
			want: []cause{invalidObject("spec.network", msgOverlap)}},
		{name: "adjacent ranges", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Network = network("10.96.0.0/16", "10.97.0.0/16", "10.96.0.10")
		}},

		{name: "supported minor, other patch", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Version = "v1.34.0" }},
		{name: "supported minor, two-digit patch", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Version = "v1.35.12" }},

		{name: "unknown exposure type", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Exposure.Type = "Ingress" },
			want: []cause{notChecked, {Type: metav1.CauseTypeFieldValueNotSupported, Field: "spec.exposure.type",
				Message: `Unsupported value: "Ingress": supported values: "NodePort", "LoadBalancer", "ClusterIP", "FrontDoor"`}}},
		{name: "front door exposure", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Exposure.Type = kv1.ExposureFrontDoor }},
		{name: "hibernation idle too long", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Hibernation = kv1.HibernationSpec{Enabled: true, IdleAfterMinutes: 10081}
		},
			want: []cause{invalid("spec.hibernation.idleAfterMinutes", 10081, "spec.hibernation.idleAfterMinutes in body should be less than or equal to 10080")}},
		{name: "five replicas", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.Replicas = ptr.To[int32](5) }},
		{name: "no replicas", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.Replicas = ptr.To[int32](0) },
			want: []cause{invalid("spec.controlPlane.replicas", 0, "spec.controlPlane.replicas in body should be greater than or equal to 1")}},
		{name: "six replicas", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.Replicas = ptr.To[int32](6) },
			want: []cause{invalid("spec.controlPlane.replicas", 6, "spec.controlPlane.replicas in body should be less than or equal to 5")}},
		{name: "extra argument without dashes", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ExtraArgs = []string{"--event-ttl=2h", "v=4"} },
			want: []cause{forbiddenArg("v"), invalid("spec.controlPlane.extraArgs[1]", "v=4", `spec.controlPlane.extraArgs[1] in body should match '^--[a-z0-9-]+(=.*)?$'`)}},
		{name: "every allowed extra argument", mutate: func(tc *kv1.TenantCluster) {
			for _, f := range controlplane.AllowedAPIServerFlags {
				tc.Spec.ControlPlane.ExtraArgs = append(tc.Spec.ControlPlane.ExtraArgs, f+"=1")
			}
		}},
		{name: "an allowed flag without a value", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ExtraArgs = []string{"--oidc-client-id"} }},
		{name: "extra argument weakening authorization", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--oidc-client-id=kube", "--authorization-mode=AlwaysAllow"}
		}, want: []cause{forbiddenArg("--authorization-mode")}},
		{name: "extra argument moving storage", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--etcd-servers=https://evil:2379"}
		},
			want: []cause{forbiddenArg("--etcd-servers")}},
		{name: "extra argument replacing TLS", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ExtraArgs = []string{"--tls-cert-file=/tmp/x"} },
			want: []cause{forbiddenArg("--tls-cert-file")}},
		{name: "extra argument dropping encryption", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--encryption-provider-config="}
		},
			want: []cause{forbiddenArg("--encryption-provider-config")}},
		{name: "extra argument with an allowed flag's prefix", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ExtraArgs = []string{"--oidc-client-id-x=1"} },
			want: []cause{forbiddenArg("--oidc-client-id-x")}},
		{name: "anonymous auth and feature gates", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--feature-gates=AllAlpha=true", "--anonymous-auth=true"}
		}, want: []cause{forbiddenArg("--feature-gates")}},
		{name: "image registry with a scheme", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ImageRegistry = "https://registry.example" },
			want: []cause{invalid("spec.controlPlane.imageRegistry", "https://registry.example", `spec.controlPlane.imageRegistry in body should match '^[a-z0-9]([a-z0-9.:-]*[a-z0-9])?(/[a-z0-9._-]+)*$'`)}},
		{name: "image registry with a port and path", mutate: func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ImageRegistry = "registry.example:5000/kube" }},
		{name: "hostname with upper case", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Exposure.Hostname = "API.example.com" },
			want: []cause{invalid("spec.exposure.hostname", "API.example.com", `spec.exposure.hostname in body should match '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'`)}},
		{name: "cluster domain with a trailing dot", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Network.ClusterDomain = "cluster.local." },
			want: []cause{invalid("spec.network.clusterDomain", "cluster.local.", `spec.network.clusterDomain in body should match '^[a-z0-9]([a-z0-9.-]*[a-z0-9])?$'`)}},
		{name: "too many extra SANs", mutate: func(tc *kv1.TenantCluster) {
			for i := range 21 {
				tc.Spec.Exposure.ExtraSANs = append(tc.Spec.Exposure.ExtraSANs, fmt.Sprintf("san%d.example.com", i))
			}
		}, want: []cause{notChecked, {Type: metav1.CauseTypeTooMany, Field: "spec.exposure.extraSANs", Message: "Too many: 21: must have at most 20 items"}}},
		{name: "datastore name too long", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Datastore.Name = strings.Repeat("d", 64) },
			want: []cause{notChecked, {Type: metav1.CauseTypeTooLong, Field: "spec.datastore.name", Message: "Too long: may not be more than 63 bytes"}}},
		{name: "quota", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Datastore.QuotaBytes = ptr.To(resource.MustParse("512Mi")) }},
		{name: "smallest quota", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Datastore.QuotaBytes = ptr.To(resource.MustParse("1Mi")) }},
		{name: "quota below 1Mi", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Datastore.QuotaBytes = ptr.To(resource.MustParse("1048575")) },
			want: []cause{invalid("spec.datastore.quotaBytes", "1048575", msgQuota)}},
		{name: "quota in thousands below 1Mi", mutate: func(tc *kv1.TenantCluster) { tc.Spec.Datastore.QuotaBytes = ptr.To(resource.MustParse("1M")) },
			want: []cause{invalid("spec.datastore.quotaBytes", "1M", msgQuota)}},
		{name: "rate limits", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Datastore.Limits = &kv1.TenantRateLimits{RequestsPerSecond: ptr.To[int32](1), BytesPerSecond: ptr.To(resource.MustParse("1Mi"))}
		}},
		{name: "no requests per second", mutate: func(tc *kv1.TenantCluster) {
			tc.Spec.Datastore.Limits = &kv1.TenantRateLimits{RequestsPerSecond: ptr.To[int32](0)}
		}, want: []cause{invalid("spec.datastore.limits.requestsPerSecond", 0, "spec.datastore.limits.requestsPerSecond in body should be greater than or equal to 1")}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := c.tcName
			if name == "" {
				name = fmt.Sprintf("create-%d", i)
			}
			tc := validTenant(name)
			if c.mutate != nil {
				c.mutate(tc)
			}
			err := a.Client.Create(ctx, tc)
			if diff := cmp.Diff(c.want, causes(t, err)); diff != "" {
				t.Errorf("create answered %v; causes (-want +got):\n%s", err, diff)
			}
			if err == nil {
				if err := a.Client.Delete(ctx, tc); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestTenantClusterVersion checks the supported releases by behaviour, not
// by the rule's text: the rule is derived from the release policy.
func TestTenantClusterVersion(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	cases := []struct {
		version string
		ok      bool
	}{
		{release.DefaultKubernetesVersion, true},
		{"v1.34.0", true},
		{"v1.34.17", true},
		{"v1.35.0", true},
		{"v1.33.9", false},
		{"v1.36.0", false},
		{"v1.3.4", false},
		{"v1.350.1", false},
		{"1.35.4", false},
		{"v1.35", false},
		{"v1.35.4-rc.1", false},
		{"latest", false},
	}
	for i, c := range cases {
		t.Run(c.version, func(t *testing.T) {
			tc := validTenant(fmt.Sprintf("version-%d", i))
			tc.Spec.Version = c.version
			err := a.Client.Create(ctx, tc)
			if c.ok {
				if err != nil {
					t.Fatalf("version %s refused: %v", c.version, err)
				}
				if err := a.Client.Delete(ctx, tc); err != nil {
					t.Fatal(err)
				}
				return
			}
			got := causes(t, err)
			if len(got) != 1 || got[0].Field != "spec.version" || got[0].Type != metav1.CauseTypeFieldValueInvalid {
				t.Fatalf("version %s: want one Invalid cause on spec.version, got %+v (%v)", c.version, got, err)
			}
		})
	}
}

// TestTenantClusterVersionTransitions checks the rules on how spec.version
// may change, at each boundary: the same release, a patch up and down, a
// minor up by one and by two, a minor down, and the major.
func TestTenantClusterVersionTransitions(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	const (
		downgrade = "spec.version: downgrades are not supported"
		skip      = "spec.version: minor versions cannot be skipped"
	)
	msgSupported := install.VersionMessage()
	cases := []struct {
		from, to string
		// want are the messages of the refusal, every one on spec.version.
		want []string
	}{
		{from: "v1.35.4", to: "v1.35.4"},
		{from: "v1.35.4", to: "v1.35.5"},
		{from: "v1.35.4", to: "v1.35.0"},
		{from: "v1.34.9", to: "v1.34.10"},
		{from: "v1.34.10", to: "v1.34.9"},
		{from: "v1.34.2", to: "v1.35.0"},
		{from: "v1.34.17", to: "v1.35.4"},
		{from: "v1.35.4", to: "v1.34.2", want: []string{downgrade + " (v1.35.4 → v1.34.2): a newer minor may have stored objects an older one cannot read; only another patch release of v1.35 is allowed"}},
		{from: "v1.35.0", to: "v1.34.17", want: []string{downgrade + " (v1.35.0 → v1.34.17): a newer minor may have stored objects an older one cannot read; only another patch release of v1.35 is allowed"}},
		{from: "v1.34.2", to: "v1.36.0", want: []string{msgSupported, skip + " (v1.34.2 → v1.36.0): upgrade one minor at a time, to the next minor of v1.34 first"}},
		// Minors compare as numbers, not as strings: "4" > "35".
		{from: "v1.35.4", to: "v1.4.0", want: []string{msgSupported, downgrade + " (v1.35.4 → v1.4.0): a newer minor may have stored objects an older one cannot read; only another patch release of v1.35 is allowed"}},
		{from: "v1.35.4", to: "v1.350.0", want: []string{msgSupported, skip + " (v1.35.4 → v1.350.0): upgrade one minor at a time, to the next minor of v1.35 first"}},
		{from: "v1.35.4", to: "v2.0.0", want: []string{msgSupported, skip + " (v1.35.4 → v2.0.0): upgrade one minor at a time, to the next minor of v1.35 first"}},
		{from: "v1.35.4", to: "v0.35.4", want: []string{msgSupported, downgrade + " (v1.35.4 → v0.35.4): a newer minor may have stored objects an older one cannot read; only another patch release of v1.35 is allowed"}},
		// Not a version at all: only the rule on the field answers; the
		// transition rules do not try to parse it.
		{from: "v1.35.4", to: "latest", want: []string{msgSupported}},
		{from: "v1.35.4", to: "v1.35", want: []string{msgSupported}},
	}
	for i, c := range cases {
		t.Run(c.from+"→"+c.to, func(t *testing.T) {
			tc := validTenant(fmt.Sprintf("transition-%d", i))
			tc.Spec.Version = c.from
			if err := a.Client.Create(ctx, tc); err != nil {
				t.Fatalf("create at %s: %v", c.from, err)
			}
			t.Cleanup(func() { _ = a.Client.Delete(ctx, tc) })
			err := a.Client.Patch(ctx, tc, client.RawPatch("application/merge-patch+json", []byte(`{"spec":{"version":"`+c.to+`"}}`)))
			// The rule on the field shows the refused value; the
			// transition rules sit on spec and name the versions in
			// their message instead.
			var want []cause
			for _, m := range c.want {
				if m == msgSupported {
					want = append(want, invalid("spec.version", c.to, m))
				} else {
					want = append(want, invalidObject("spec.version", m))
				}
			}
			sort.Slice(want, func(i, j int) bool { return want[i].Message < want[j].Message })
			if diff := cmp.Diff(want, causes(t, err)); diff != "" {
				t.Fatalf("%s → %s answered %v; causes (-want +got):\n%s", c.from, c.to, err, diff)
			}
			if err == nil && tc.Spec.Version != c.to {
				t.Fatalf("%s → %s accepted but the object has %s", c.from, c.to, tc.Spec.Version)
			}
		})
	}
}

// TestTenantClusterDefaults checks what an empty spec becomes: the object
// every other rule then sees.
func TestTenantClusterDefaults(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "defaults", Namespace: "default"}}
	if err := a.Client.Create(ctx, tc); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Client.Delete(ctx, tc) })
	want := kv1.TenantClusterSpec{
		Version:      release.DefaultKubernetesVersion,
		ControlPlane: kv1.ControlPlaneSpec{Replicas: ptr.To[int32](1)},
		Exposure:     kv1.ExposureSpec{Type: kv1.ExposureNodePort},
		Datastore:    kv1.DatastorePlacement{Name: "default"},
		Network:      network("10.96.0.0/16", "10.244.0.0/16", "10.96.0.10"),
		Addons: kv1.AddonsSpec{CoreDNS: kv1.AddonSpec{Enabled: ptr.To(true)}, KubeProxy: kv1.AddonSpec{Enabled: ptr.To(true)}, Tunnel: kv1.AddonSpec{Enabled: ptr.To(true)},
			NetworkPolicy: kv1.AddonSpec{Enabled: ptr.To(true)}},
	}
	if diff := cmp.Diff(want, tc.Spec); diff != "" {
		t.Fatalf("defaulted spec (-want +got):\n%s", diff)
	}
}

func TestTenantClusterUpdateValidation(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	cases := []struct {
		name    string
		initial func(*kv1.TenantCluster)
		// patch is a JSON merge patch, so a case can remove a field the
		// typed object would not.
		patch string
		want  []cause
		// datastoreMoves: the patch changes spec.datastore.name.
		datastoreMoves bool
	}{
		{name: "service CIDR changed", patch: `{"spec":{"network":{"serviceCIDR":"10.100.0.0/16","dnsServiceIP":"10.100.0.10"}}}`,
			want: []cause{invalidObject("spec.network", msgNetImmutable)}},
		{name: "pod CIDR changed", patch: `{"spec":{"network":{"podCIDR":"10.245.0.0/16"}}}`,
			want: []cause{invalidObject("spec.network", msgNetImmutable)}},
		{name: "DNS IP changed", patch: `{"spec":{"network":{"dnsServiceIP":"10.96.0.11"}}}`,
			want: []cause{invalidObject("spec.network", msgNetImmutable)}},
		{name: "cluster domain changed", patch: `{"spec":{"network":{"clusterDomain":"tenant.local"}}}`,
			want: []cause{invalidObject("spec.network", msgNetImmutable)}},
		{name: "invalid change reports the field rule too", patch: `{"spec":{"network":{"podCIDR":"pods"}}}`,
			want: []cause{invalidObject("spec.network", msgNetImmutable), invalid("spec.network.podCIDR", "pods", msgPodCIDR)}},
		{name: "network removed from a tenant with its own ranges",
			initial: func(tc *kv1.TenantCluster) { tc.Spec.Network = network("10.50.0.0/16", "10.60.0.0/16", "10.50.0.10") },
			patch:   `{"spec":{"network":null}}`,
			want:    []cause{invalidObject("spec.network", msgNetImmutable)}},
		// The rule "network cannot be removed once set" never fires:
		// spec.network defaults to {}, and its fields to the default
		// ranges, before the rules run, so a removed network comes back
		// as the defaults and the immutability rule decides.
		{name: "network removed from a tenant with the default ranges is defaulted back", patch: `{"spec":{"network":null}}`},
		{name: "network unchanged, other fields changed", patch: `{"spec":{"paused":true,"controlPlane":{"replicas":3},"version":"v1.35.0"}}`},

		// A changed datastore is a move (a live migration), not an error.
		{name: "datastore changed", patch: `{"spec":{"datastore":{"name":"other"}}}`, datastoreMoves: true},
		{name: "datastore name removed from a tenant on another datastore",
			initial: func(tc *kv1.TenantCluster) { tc.Spec.Datastore.Name = "other" },
			patch:   `{"spec":{"datastore":{"name":null}}}`, datastoreMoves: true},
		{name: "quota changed", patch: `{"spec":{"datastore":{"quotaBytes":"1Gi"}}}`},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tc := validTenant(fmt.Sprintf("update-%d", i))
			if c.initial != nil {
				c.initial(tc)
			}
			if err := a.Client.Create(ctx, tc); err != nil {
				t.Fatalf("create: %v", err)
			}
			t.Cleanup(func() { _ = a.Client.Delete(ctx, tc) })
			before := tc.Spec.DeepCopy()
			err := a.Client.Patch(ctx, tc, client.RawPatch("application/merge-patch+json", []byte(c.patch)))
			if diff := cmp.Diff(c.want, causes(t, err)); diff != "" {
				t.Fatalf("patch %s answered %v; causes (-want +got):\n%s", c.patch, err, diff)
			}
			if err != nil {
				return
			}
			if tc.Spec.Network != before.Network || (tc.Spec.Datastore.Name != before.Datastore.Name) != c.datastoreMoves {
				t.Fatalf("accepted patch %s: network %+v -> %+v (immutable), datastore %q -> %q",
					c.patch, before.Network, tc.Spec.Network, before.Datastore.Name, tc.Spec.Datastore.Name)
			}
		})
	}
}

func validDatastore(name string) *kv1.Datastore {
	return &kv1.Datastore{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: kv1.DatastoreSpec{
			Endpoints:     []string{"https://10.199.0.1:23790", "https://datastore-1.example:23791"},
			CASecretRef:   kv1.SecretReference{Namespace: "kubinception-system", Name: "datastore-ca"},
			RootSecretRef: kv1.SecretReference{Namespace: "kubinception-system", Name: "datastore-root"},
		},
	}
}

// TestDatastoreDefaults checks what an unset gateway and quota become,
// both when the fields are absent (kubectl, Helm) and when a Go client
// sends the typed object, whose empty structs arrive as {}.
func TestDatastoreDefaults(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	cases := []struct {
		name  string
		typed bool
	}{
		{name: "fields absent", typed: false},
		{name: "typed client", typed: true},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := validDatastore(fmt.Sprintf("defaults-%d", i))
			if c.typed {
				if err := a.Client.Create(ctx, ds); err != nil {
					t.Fatal(err)
				}
			} else {
				u := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": kv1.GroupVersion.String(), "kind": "Datastore",
					"metadata": map[string]any{"name": ds.Name},
					"spec": map[string]any{
						"endpoints":     []any{ds.Spec.Endpoints[0]},
						"caSecretRef":   map[string]any{"namespace": ds.Spec.CASecretRef.Namespace, "name": ds.Spec.CASecretRef.Name},
						"rootSecretRef": map[string]any{"namespace": ds.Spec.RootSecretRef.Namespace, "name": ds.Spec.RootSecretRef.Name},
					},
				}}
				if err := a.Client.Create(ctx, u); err != nil {
					t.Fatal(err)
				}
				if err := a.Client.Get(ctx, client.ObjectKeyFromObject(ds), ds); err != nil {
					t.Fatal(err)
				}
			}
			t.Cleanup(func() { _ = a.Client.Delete(ctx, ds) })
			if q := ds.Spec.DefaultQuotaBytes; q == nil || q.Cmp(resource.MustParse("2Gi")) != 0 {
				t.Errorf("defaultQuotaBytes = %v, want 2Gi", q)
			}
			g := ds.Spec.Gateway
			if g.Replicas == nil || *g.Replicas != 2 {
				t.Errorf("gateway.replicas = %v, want 2", g.Replicas)
			}
			l := g.DefaultLimits
			if l.RequestsPerSecond == nil || *l.RequestsPerSecond != 500 || l.BytesPerSecond == nil || l.BytesPerSecond.Cmp(resource.MustParse("32Mi")) != 0 {
				t.Errorf("gateway.defaultLimits = %+v, want 500 requests and 32Mi per second", l)
			}
		})
	}
}

func TestDatastoreValidation(t *testing.T) {
	a := testenv.SharedAPIServer(t)
	ctx := context.Background()
	endpointPattern := `^https://[^\s/]+(:[0-9]+)?$`
	cases := []struct {
		name   string
		mutate func(*kv1.Datastore)
		want   []cause
	}{
		{name: "valid", mutate: func(*kv1.Datastore) {}},
		{name: "no endpoints", mutate: func(ds *kv1.Datastore) { ds.Spec.Endpoints = []string{} },
			want: []cause{{Type: metav1.CauseTypeFieldValueInvalid, Field: "spec.endpoints", Message: "Invalid value: 0: spec.endpoints in body should have at least 1 items"}}},
		{name: "plain http endpoint", mutate: func(ds *kv1.Datastore) { ds.Spec.Endpoints = []string{"http://10.199.0.1:2379"} },
			want: []cause{invalid("spec.endpoints[0]", "http://10.199.0.1:2379", "spec.endpoints[0] in body should match '"+endpointPattern+"'")}},
		{name: "endpoint with a path", mutate: func(ds *kv1.Datastore) { ds.Spec.Endpoints = []string{"https://10.199.0.1:2379/v3"} },
			want: []cause{invalid("spec.endpoints[0]", "https://10.199.0.1:2379/v3", "spec.endpoints[0] in body should match '"+endpointPattern+"'")}},
		{name: "ten endpoints", mutate: func(ds *kv1.Datastore) {
			ds.Spec.Endpoints = nil
			for i := range 10 {
				ds.Spec.Endpoints = append(ds.Spec.Endpoints, fmt.Sprintf("https://10.199.0.1:%d", 23790+i))
			}
		}, want: []cause{{Type: metav1.CauseTypeTooMany, Field: "spec.endpoints", Message: "Too many: 10: must have at most 9 items"}}},
		{name: "empty CA Secret name", mutate: func(ds *kv1.Datastore) { ds.Spec.CASecretRef.Name = "" },
			want: []cause{invalid("spec.caSecretRef.name", "", "spec.caSecretRef.name in body should be at least 1 chars long")}},
		{name: "one gateway replica", mutate: func(ds *kv1.Datastore) { ds.Spec.Gateway.Replicas = ptr.To[int32](1) }},
		{name: "no gateway replicas", mutate: func(ds *kv1.Datastore) { ds.Spec.Gateway.Replicas = ptr.To[int32](0) },
			want: []cause{invalid("spec.gateway.replicas", 0, "spec.gateway.replicas in body should be greater than or equal to 1")}},
		{name: "no default requests per second", mutate: func(ds *kv1.Datastore) { ds.Spec.Gateway.DefaultLimits.RequestsPerSecond = ptr.To[int32](0) },
			want: []cause{invalid("spec.gateway.defaultLimits.requestsPerSecond", 0, "spec.gateway.defaultLimits.requestsPerSecond in body should be greater than or equal to 1")}},
		{name: "empty root Secret namespace", mutate: func(ds *kv1.Datastore) { ds.Spec.RootSecretRef.Namespace = "" },
			want: []cause{invalid("spec.rootSecretRef.namespace", "", "spec.rootSecretRef.namespace in body should be at least 1 chars long")}},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ds := validDatastore(fmt.Sprintf("validation-%d", i))
			c.mutate(ds)
			err := a.Client.Create(ctx, ds)
			if diff := cmp.Diff(c.want, causes(t, err)); diff != "" {
				t.Errorf("create answered %v; causes (-want +got):\n%s", err, diff)
			}
			if err == nil {
				if err := a.Client.Delete(ctx, ds); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}
