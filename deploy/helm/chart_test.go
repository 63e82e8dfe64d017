// Package helm_test checks the Helm chart in deploy/helm/kubinception
// against `kubinception install`: with the same settings, `helm template
// --include-crds` and `kubinception install --dry-run` must produce the
// same objects, compared parsed, not as text.
//
// Helm is not a dependency of the module: hack/deps builds it from its Go
// module into bin/tools. Without it the tests skip, saying so, or fail when
// KUBINCEPTION_REQUIRE_BINARIES=1.
package helm_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/testenv"
)

const chartDir = "kubinception"

// helm is the Helm binary the tests render the chart with.
func helm(t *testing.T) string { return testenv.Helm(t) }

var built struct {
	once sync.Once
	path string
	err  error
}

// kubinception returns the kubinception binary: $KUBINCEPTION_BIN (hack/test
// builds bin/kubinception first), else one built once for these tests.
func kubinception(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("KUBINCEPTION_BIN"); p != "" {
		return p
	}
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "kubinception-chart-test-")
		if err != nil {
			built.err = err
			return
		}
		built.path = filepath.Join(dir, "kubinception")
		out, err := exec.Command("go", "build", "-o", built.path, "kubinception.dev/kubinception/cmd/kubinception").CombinedOutput()
		if err != nil {
			built.err = fmt.Errorf("build kubinception: %w\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.path
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.path != "" {
		os.RemoveAll(filepath.Dir(built.path))
	}
	os.Exit(code)
}

// run runs a command and returns its standard output, failing the test
// with both outputs when it fails.
func run(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s%s", filepath.Base(name), strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.Bytes()
}

// objects parses a rendered stream, failing the test on a bad one.
func objects(t *testing.T, stream []byte) map[string]map[string]any {
	t.Helper()
	objs, err := install.ReadObjects(stream)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

// chartCase is one setting, as chart values and as install flags.
type chartCase struct {
	name   string
	values map[string]any
	flags  []string
	// want are objects both must render, so an empty rendering on both
	// sides cannot pass.
	want []string
}

var (
	crdKeys = []string{
		"apiextensions.k8s.io/v1/CustomResourceDefinition//datastores.kubinception.dev",
		"apiextensions.k8s.io/v1/CustomResourceDefinition//tenantclusters.kubinception.dev",
	}
	operatorKeys = []string{
		"v1/Namespace//kubinception-system",
		"v1/ServiceAccount/kubinception-system/kubinception-manager",
		"rbac.authorization.k8s.io/v1/ClusterRole//kubinception-manager",
		"rbac.authorization.k8s.io/v1/ClusterRoleBinding//kubinception-manager",
		"rbac.authorization.k8s.io/v1/ClusterRole//kubinception-metrics-reader",
		"v1/ServiceAccount/kubinception-system/kubinception-gateway",
		"rbac.authorization.k8s.io/v1/ClusterRole//kubinception-gateway",
		"rbac.authorization.k8s.io/v1/ClusterRoleBinding//kubinception-gateway",
		"rbac.authorization.k8s.io/v1/Role/kubinception-system/kubinception-manager-leader-election",
		"rbac.authorization.k8s.io/v1/RoleBinding/kubinception-system/kubinception-manager-leader-election",
		"apps/v1/Deployment/kubinception-system/kubinception-manager",
		"v1/ServiceAccount/kubinception-system/kubinception-console",
		"rbac.authorization.k8s.io/v1/ClusterRole//kubinception-console",
		"rbac.authorization.k8s.io/v1/ClusterRoleBinding//kubinception-console",
		"apps/v1/Deployment/kubinception-system/kubinception-console",
		"v1/Service/kubinception-system/kubinception-console",
	}
	datastoreKey = "kubinception.dev/v1alpha1/Datastore//default"
)

func chartCases() []chartCase {
	base := append(append([]string{}, crdKeys...), operatorKeys...)
	return []chartCase{{
		name: "defaults",
		values: map[string]any{
			"image":     map[string]any{"repository": "kubinception.local/kubinception", "tag": "dev-0123456789ab"},
			"namespace": map[string]any{"create": true},
		},
		flags: []string{"--image", "kubinception.local/kubinception:dev-0123456789ab", "--no-default-datastore"},
		want:  base,
	}, {
		name: "every value set",
		values: map[string]any{
			"image":                   map[string]any{"repository": "registry.example.com:5000/platform/kubinception", "tag": "v0.1.0", "pullPolicy": "Always"},
			"tenantImageRegistry":     "registry.example.com/kubernetes",
			"loadBalancerAddressPool": "192.0.2.128/25",
			"protectedNetworks":       []string{"10.200.0.0/16", "192.0.2.10/32"},
			"backup": map[string]any{"volumeClaim": "kubinception-backups", "s3": map[string]any{
				"endpoint": "https://s3.example.com", "bucket": "platform-backups", "prefix": "admin-1/", "region": "eu-west-1", "credentialsSecret": "s3-creds"}},
			"allowedRegistries": []string{"registry.example.com/kubernetes", "mirror.example.com"},
			"replicas":          3,
			"leaderElection":    true,
			"resources": map[string]any{
				"requests": map[string]any{"cpu": "100m", "memory": "128Mi"},
				"limits":   map[string]any{"memory": "512Mi"},
			},
			"namespace": map[string]any{"create": true},
			"defaultDatastore": map[string]any{
				"enabled":       true,
				"endpoints":     []string{"https://10.0.0.1:2379", "https://10.0.0.2:2379", "https://10.0.0.3:2379"},
				"caSecretRef":   map[string]any{"namespace": "platform", "name": "etcd-ca"},
				"rootSecretRef": map[string]any{"namespace": "platform", "name": "etcd-root"},
			},
		},
		flags: []string{
			"--image", "registry.example.com:5000/platform/kubinception:v0.1.0", "--image-pull-policy", "Always",
			"--image-registry", "registry.example.com/kubernetes", "--replicas", "3", "--leader-elect",
			"--load-balancer-address-pool", "192.0.2.128/25",
			"--protected-networks", "10.200.0.0/16,192.0.2.10/32",
			"--backup-volume-claim", "kubinception-backups",
			"--backup-s3-endpoint", "https://s3.example.com", "--backup-s3-bucket", "platform-backups", "--backup-s3-prefix", "admin-1/",
			"--backup-s3-region", "eu-west-1", "--backup-s3-credentials-secret", "s3-creds",
			"--allowed-registries", "registry.example.com/kubernetes,mirror.example.com",
			"--requests", "cpu=100m,memory=128Mi", "--limits", "memory=512Mi",
			"--datastore-endpoints", "https://10.0.0.1:2379,https://10.0.0.2:2379,https://10.0.0.3:2379",
			"--datastore-ca-secret", "platform/etcd-ca", "--datastore-root-secret", "platform/etcd-root",
		},
		want: append(append([]string{}, base...), datastoreKey),
	}, {
		name: "digest and one replica without leader election or resources",
		values: map[string]any{
			"image":          map[string]any{"repository": "registry.example.com/kubinception", "digest": "sha256:" + strings.Repeat("ab", 32)},
			"leaderElection": false,
			"backup":         map[string]any{"hostPath": "/srv/backups"},
			// null, not {}: Helm merges a map into the defaults.
			"resources": nil,
			"namespace": map[string]any{"create": true},
		},
		flags: []string{
			"--image", "registry.example.com/kubinception@sha256:" + strings.Repeat("ab", 32),
			"--leader-elect=false", "--requests", "", "--no-default-datastore", "--backup-host-path", "/srv/backups",
		},
		want: base,
	}}
}

// installArgs runs install --dry-run with nothing to read from a cluster:
// a kubeconfig that does not exist makes any attempt fail the test.
func installArgs(t *testing.T, format string, flags []string) []string {
	dir := t.TempDir()
	return append([]string{"install", "--dry-run", "-o", format, "--root", dir, "--kubeconfig", filepath.Join(dir, "absent.kubeconfig")}, flags...)
}

func TestChartRendersWhatInstallApplies(t *testing.T) {
	helmBin := helm(t)
	bin := kubinception(t)
	for _, c := range chartCases() {
		t.Run(c.name, func(t *testing.T) {
			values := testenv.WriteHelmValues(t, c.values)
			chart := objects(t, run(t, helmBin, "template", "kubinception", chartDir, "--namespace", "kubinception-system", "--include-crds", "-f", values))
			install := objects(t, run(t, bin, installArgs(t, "yaml", c.flags)...))

			for _, k := range c.want {
				if chart[k] == nil || install[k] == nil {
					t.Errorf("%s: rendered by the chart = %v, by install = %v; want both", k, chart[k] != nil, install[k] != nil)
				}
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(install)), slices.Sorted(maps.Keys(chart))); diff != "" {
				t.Fatalf("objects differ (-install +chart):\n%s", diff)
			}
			for _, k := range slices.Sorted(maps.Keys(install)) {
				if diff := cmp.Diff(install[k], chart[k]); diff != "" {
					t.Errorf("%s differs (-install +chart):\n%s", k, diff)
				}
			}

			// -o json prints the same objects as a List.
			var list struct {
				Kind  string           `json:"kind"`
				Items []map[string]any `json:"items"`
			}
			if err := json.Unmarshal(run(t, bin, installArgs(t, "json", c.flags)...), &list); err != nil {
				t.Fatalf("install -o json: %v", err)
			}
			// Each item as a document of its own: JSON is YAML.
			var stream bytes.Buffer
			for _, item := range list.Items {
				data, err := json.Marshal(item)
				if err != nil {
					t.Fatal(err)
				}
				fmt.Fprintf(&stream, "---\n%s\n", data)
			}
			fromJSON := objects(t, stream.Bytes())
			if diff := cmp.Diff(install, fromJSON); list.Kind != "List" || diff != "" {
				t.Errorf("install -o json (a %s) differs from -o yaml (-yaml +json):\n%s", list.Kind, diff)
			}
		})
	}
}

func TestChartLints(t *testing.T) {
	helmBin := helm(t)
	for _, c := range chartCases() {
		values := testenv.WriteHelmValues(t, c.values)
		run(t, helmBin, "lint", "--strict", chartDir, "--namespace", "kubinception-system", "-f", values)
	}
}

// TestChartRefusesBadValues checks that the chart says which value to fix,
// as install names the flag.
func TestChartRefusesBadValues(t *testing.T) {
	helmBin := helm(t)
	image := map[string]any{"repository": "r/kubinception", "tag": "v1"}
	tests := []struct {
		name      string
		namespace string
		values    map[string]any
		want      string
	}{
		{"no image tag", "kubinception-system", map[string]any{}, "image.tag (or image.digest) must be set"},
		{"replicas without leader election", "kubinception-system", map[string]any{"image": image, "replicas": 2, "leaderElection": false}, "needs leaderElection"},
		{"datastore without endpoints", "kubinception-system", map[string]any{"image": image, "defaultDatastore": map[string]any{"enabled": true}}, "needs defaultDatastore.endpoints"},
		{"datastore over http", "kubinception-system", map[string]any{"image": image, "defaultDatastore": map[string]any{"enabled": true, "endpoints": []string{"http://10.0.0.1:2379"}}}, "/defaultDatastore/endpoints/0"},
		{"unknown pull policy", "kubinception-system", map[string]any{"image": map[string]any{"tag": "v1", "pullPolicy": "Sometimes"}}, "/image/pullPolicy"},
		{"protected network not an address", "kubinception-system", map[string]any{"image": image, "protectedNetworks": []string{"10.200.0.0/16", "admin-node"}}, "/protectedNetworks/1"},
		{"allowed registry with a space", "kubinception-system", map[string]any{"image": image, "allowedRegistries": []string{"registry.example.com", "bad registry"}}, "/allowedRegistries/1"},
		{"protected networks as one string", "kubinception-system", map[string]any{"image": image, "protectedNetworks": "10.200.0.0/16"}, "/protectedNetworks"},
		{"misspelt value", "kubinception-system", map[string]any{"image": image, "replica": 2}, "replica"},
		{"release elsewhere without namespace.create", "default", map[string]any{"image": image}, "set namespace.create=true"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := exec.Command(helmBin, "template", "kubinception", chartDir, "--namespace", tt.namespace, "-f", testenv.WriteHelmValues(t, tt.values)).CombinedOutput()
			if err == nil || !strings.Contains(string(out), tt.want) {
				t.Fatalf("helm template: err = %v, want a refusal mentioning %q:\n%s", err, tt.want, out)
			}
		})
	}
}
