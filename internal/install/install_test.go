package install

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/release"
)

// chartCRDDir is the Helm chart's copy of the CRDs.
const chartCRDDir = "../../deploy/helm/kubinception/crds"

func TestCRDsCarryValidation(t *testing.T) {
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]*unstructured.Unstructured{}
	for _, c := range crds {
		names[c.GetName()] = c
	}
	tc, ok := names["tenantclusters.kubinception.dev"]
	if !ok || names["datastores.kubinception.dev"] == nil {
		t.Fatalf("CRDs = %v, want tenantclusters and datastores", names)
	}
	text, _ := tc.MarshalJSON()
	for _, rule := range []string{"spec.version must be a supported", "network is immutable", "metadata.name must be at most 40", "network.serviceCIDR must be an IPv4 CIDR"} {
		if !strings.Contains(string(text), rule) {
			t.Errorf("the TenantCluster CRD lacks the rule %q; run hack/generate", rule)
		}
	}
}

// TestCRDFilesAreGenerated fails when the embedded CRDs are not what
// hack/generate writes from the current release policy, e.g. after a
// supported minor was added without regenerating.
func TestCRDFilesAreGenerated(t *testing.T) {
	files, err := CRDFiles()
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no CRD files embedded")
	}
	for name, data := range files {
		want, err := FinalizeCRD(data)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(data, want) {
			t.Errorf("%s is not what hack/generate writes from the release policy: run hack/generate", name)
		}
	}
}

// TestChartCRDsAreTheInstalledOnes fails when the Helm chart's crds/ and
// the CRDs `kubinception install` applies differ in any byte.
func TestChartCRDsAreTheInstalledOnes(t *testing.T) {
	files, err := CRDFiles()
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(chartCRDDir)
	if err != nil {
		t.Fatalf("the chart's CRDs: %v (run hack/generate)", err)
	}
	var chart []string
	for _, e := range entries {
		chart = append(chart, e.Name())
		data, err := os.ReadFile(filepath.Join(chartCRDDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(data, files[e.Name()]) {
			t.Errorf("%s/%s differs from internal/install/crds/%s: run hack/generate", chartCRDDir, e.Name(), e.Name())
		}
	}
	var embedded []string
	for name := range files {
		embedded = append(embedded, name)
	}
	slices.Sort(chart)
	slices.Sort(embedded)
	if !slices.Equal(chart, embedded) {
		t.Errorf("the chart has CRD files %v, install has %v: run hack/generate", chart, embedded)
	}
}

// versionField is spec.version's schema in the TenantCluster CRD.
func versionField(t *testing.T) map[string]any {
	t.Helper()
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range crds {
		if c.GetName() != tenantClusterCRDName {
			continue
		}
		versions, _, _ := unstructured.NestedSlice(c.Object, "spec", "versions")
		if len(versions) != 1 {
			t.Fatalf("TenantCluster CRD has %d versions, this test knows one", len(versions))
		}
		field, ok, err := unstructured.NestedMap(versions[0].(map[string]any), "schema", "openAPIV3Schema", "properties", "spec", "properties", "version")
		if err != nil || !ok {
			t.Fatalf("no spec.version in the TenantCluster CRD: %v", err)
		}
		return field
	}
	t.Fatalf("no CRD %s", tenantClusterCRDName)
	return nil
}

// celLiteral reads a single-quoted CEL string literal's value, refusing
// escapes CEL would refuse too.
func celLiteral(t *testing.T, lit string) string {
	t.Helper()
	var b strings.Builder
	for i := 0; i < len(lit); i++ {
		if lit[i] != '\\' {
			b.WriteByte(lit[i])
			continue
		}
		if i+1 == len(lit) || (lit[i+1] != '\\' && lit[i+1] != '\'') {
			t.Fatalf("CEL literal %q has an escape this test (and CEL) does not accept at %d", lit, i)
		}
		i++
		b.WriteByte(lit[i])
	}
	return b.String()
}

// TestVersionRule reads the rule on spec.version from the CRD text and runs
// its regular expression (CEL's matches() is RE2, as Go's regexp is):
// every supported minor passes, its neighbours do not. The real API
// server's verdicts are checked in validation_test.go.
func TestVersionRule(t *testing.T) {
	field := versionField(t)
	if field["default"] != release.DefaultKubernetesVersion {
		t.Errorf("spec.version defaults to %v, want release.DefaultKubernetesVersion %s", field["default"], release.DefaultKubernetesVersion)
	}
	rules, _ := field["x-kubernetes-validations"].([]any)
	if len(rules) != 1 {
		t.Fatalf("spec.version has rules %v, want one", rules)
	}
	rule, _ := rules[0].(map[string]any)
	wantMsg := "spec.version must be a supported Kubernetes release: v1.34.x or v1.35.x, e.g. " + release.DefaultKubernetesVersion
	if slices.Equal(release.SupportedMinors(), []int{34, 35}) && rule["message"] != wantMsg {
		t.Errorf("message = %q, want %q", rule["message"], wantMsg)
	}
	text, _ := rule["rule"].(string)
	m := regexp.MustCompile(`^self\.matches\('(.*)'\)$`).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("rule %q is not self.matches('...')", text)
	}
	re, err := regexp.Compile(celLiteral(t, m[1]))
	if err != nil {
		t.Fatalf("rule %q: %v", text, err)
	}
	minors := release.SupportedMinors()
	accept := []string{release.DefaultKubernetesVersion}
	reject := []string{"", "latest", "v1", "1.35.4", "v2.35.4", "v1.35.4-rc.1", " v1.35.4", "v1.35.4 "}
	for _, minor := range minors {
		accept = append(accept, fmt.Sprintf("v1.%d.0", minor), fmt.Sprintf("v1.%d.17", minor))
		reject = append(reject, fmt.Sprintf("v1.%d", minor), fmt.Sprintf("v1.%d.x", minor), fmt.Sprintf("v1.%d0.1", minor), fmt.Sprintf("v1.%d.1", minor/10))
		for _, n := range []int{minor - 1, minor + 1} {
			if !slices.Contains(minors, n) {
				reject = append(reject, fmt.Sprintf("v1.%d.0", n))
			}
		}
	}
	for _, v := range accept {
		if !re.MatchString(v) {
			t.Errorf("the CRD's rule %s refuses the supported %q", text, v)
		}
	}
	for _, v := range reject {
		if re.MatchString(v) {
			t.Errorf("the CRD's rule %s accepts %q", text, v)
		}
	}
}

func TestOperatorRBACIsScoped(t *testing.T) {
	for _, obj := range objects(testOptions()) {
		cr, ok := obj.(*rbacv1.ClusterRole)
		if !ok {
			continue
		}
		for _, rule := range cr.Rules {
			for _, s := range append(append(rule.Verbs, rule.Resources...), rule.APIGroups...) {
				if s == "*" {
					t.Fatalf("ClusterRole has a wildcard: %+v", rule)
				}
			}
			for _, r := range rule.Resources {
				if (r == "pods" || r == "nodes") && len(rule.Verbs) != 3 {
					t.Errorf("%s must be read-only, got %v", r, rule.Verbs)
				}
			}
		}
		return
	}
	t.Fatal("no ClusterRole rendered")
}

// TestOperatorPodsCarryOperatorLabels: tenants' NetworkPolicies let the
// operator's pods reach their control planes by OperatorLabels in
// Namespace; pods labelled otherwise would be shut out of every tenant.
func TestOperatorPodsCarryOperatorLabels(t *testing.T) {
	for _, obj := range objects(testOptions()) {
		dep, ok := obj.(*appsv1.Deployment)
		if !ok || dep.Name != Name {
			continue
		}
		if dep.Namespace != Namespace {
			t.Errorf("operator Deployment in %q, want %q", dep.Namespace, Namespace)
		}
		for k, v := range OperatorLabels() {
			if dep.Spec.Template.Labels[k] != v {
				t.Errorf("operator pods labelled %v, want %s=%s among them", dep.Spec.Template.Labels, k, v)
			}
		}
		return
	}
	t.Fatal("no operator Deployment rendered")
}

func testOptions() Options {
	o := DefaultOptions()
	o.Image = "kubinception.local/kubinception:dev"
	return o
}

func testDatastore() *kv1.DatastoreSpec {
	return &kv1.DatastoreSpec{
		Endpoints:     []string{"https://10.199.0.1:23790"},
		CASecretRef:   kv1.SecretReference{Namespace: Namespace, Name: "ca"},
		RootSecretRef: kv1.SecretReference{Namespace: Namespace, Name: "root"},
	}
}

func TestRender(t *testing.T) {
	kinds := func(objs []*unstructured.Unstructured) []string {
		var out []string
		for _, u := range objs {
			out = append(out, u.GetKind()+"/"+u.GetName())
		}
		return out
	}
	base := []string{
		"CustomResourceDefinition/datastores.kubinception.dev", "CustomResourceDefinition/tenantbackups.kubinception.dev",
		"CustomResourceDefinition/tenantclusters.kubinception.dev", "CustomResourceDefinition/tenantrestores.kubinception.dev",
		"Namespace/kubinception-system", "ServiceAccount/kubinception-manager", "ClusterRole/kubinception-manager",
		"ClusterRoleBinding/kubinception-manager", "ClusterRole/kubinception-metrics-reader",
		"ServiceAccount/kubinception-gateway", "ClusterRole/kubinception-gateway", "ClusterRoleBinding/kubinception-gateway",
		"Role/kubinception-manager-leader-election",
		"RoleBinding/kubinception-manager-leader-election", "Deployment/kubinception-manager",
		"ServiceAccount/kubinception-console", "ClusterRole/kubinception-console", "ClusterRoleBinding/kubinception-console",
		"Deployment/kubinception-console", "Service/kubinception-console",
		"Namespace/kubinception-frontdoor", "ServiceAccount/kubinception-frontdoor", "Role/kubinception-frontdoor", "RoleBinding/kubinception-frontdoor",
		"Role/kubinception-manager", "RoleBinding/kubinception-manager", "Deployment/kubinception-frontdoor", "Service/kubinception-frontdoor",
		"NetworkPolicy/kubinception-frontdoor",
	}
	objs, err := Render(testOptions())
	if err != nil {
		t.Fatal(err)
	}
	if got := kinds(objs); !slices.Equal(got, base) {
		t.Errorf("objects = %v, want %v", got, base)
	}
	o := testOptions()
	o.Datastore = testDatastore()
	o.Replicas, o.LeaderElection, o.Registry = 3, true, "registry.example.com/k8s"
	o.ProtectedNetworks = []string{"10.200.0.0/16", "10.199.0.1/32"}
	o.AllowedRegistries = []string{"registry.example.com/k8s", "mirror.example.com"}
	objs, err = Render(o)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := kinds(objs), append(slices.Clone(base), "Datastore/default"); !slices.Equal(got, want) {
		t.Errorf("objects = %v, want %v", got, want)
	}
	dep := objs[slices.Index(base, "Deployment/kubinception-manager")]
	if n, _, _ := unstructured.NestedInt64(dep.Object, "spec", "replicas"); n != 3 {
		t.Errorf("replicas = %d, want 3", n)
	}
	containers, _, _ := unstructured.NestedSlice(dep.Object, "spec", "template", "spec", "containers")
	args, _, _ := unstructured.NestedStringSlice(containers[0].(map[string]any), "args")
	if want := []string{"manager", "--leader-elect=true", "--image-registry=registry.example.com/k8s",
		"--gateway-namespace=kubinception-system", "--gateway-image=" + o.Image, "--gateway-image-pull-policy=" + string(o.ImagePullPolicy),
		"--allowed-registries=registry.example.com/k8s,mirror.example.com", "--protected-networks=10.200.0.0/16,10.199.0.1/32",
		"--front-door-domain=tenants.kubinception.internal", "--front-door-port=31443"}; !slices.Equal(args, want) {
		t.Errorf("args = %v, want %v", args, want)
	}
	for _, u := range objs {
		if _, ok := u.Object["status"]; ok {
			t.Errorf("%s %s carries a status", u.GetKind(), u.GetName())
		}
	}
	if _, ok := objs[slices.Index(base, "Deployment/kubinception-manager")].Object["spec"].(map[string]any)["strategy"]; ok {
		t.Error("the Deployment carries an empty strategy")
	}
	if _, ok := objs[slices.Index(base, "Namespace/kubinception-system")].Object["spec"]; ok {
		t.Error("the Namespace carries an empty spec")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Options)
		want   string
	}{
		{"no image", func(o *Options) { o.Image = "" }, "--image"},
		{"image with a space", func(o *Options) { o.Image = "a b" }, "--image"},
		{"pull policy", func(o *Options) { o.ImagePullPolicy = "Sometimes" }, "--image-pull-policy"},
		{"registry", func(o *Options) { o.Registry = "" }, "--image-registry"},
		{"negative replicas", func(o *Options) { o.Replicas = -1 }, "--replicas"},
		{"replicas without leader election", func(o *Options) { o.Replicas, o.LeaderElection = 2, false }, "--leader-elect"},
		{"datastore without endpoints", func(o *Options) { o.Datastore = testDatastore(); o.Datastore.Endpoints = nil }, "--datastore-endpoints"},
		{"datastore over http", func(o *Options) {
			o.Datastore = testDatastore()
			o.Datastore.Endpoints = []string{"http://10.0.0.1:2379"}
		}, "--datastore-endpoints"},
		{"datastore without CA secret", func(o *Options) { o.Datastore = testDatastore(); o.Datastore.CASecretRef.Name = "" }, "--datastore-ca-secret"},
		{"datastore without root secret", func(o *Options) { o.Datastore = testDatastore(); o.Datastore.RootSecretRef.Namespace = "" }, "--datastore-root-secret"},
		{"protected network not a CIDR", func(o *Options) { o.ProtectedNetworks = []string{"10.200.0.0/16", "admin"} }, "--protected-networks"},
		{"protected network IPv6", func(o *Options) { o.ProtectedNetworks = []string{"fd00::/8"} }, "--protected-networks"},
		{"protected network everything", func(o *Options) { o.ProtectedNetworks = []string{"0.0.0.0/0"} }, "--protected-networks"},
		{"valid", func(*Options) {}, ""},
		{"allowed registry empty", func(o *Options) { o.AllowedRegistries = []string{"registry.example.com", ""} }, "--allowed-registries"},
		{"allowed registries as one comma-joined entry", func(o *Options) { o.AllowedRegistries = []string{"a.example.com,b.example.com"} }, "--allowed-registries"},
		{"valid with allowed registries", func(o *Options) { o.AllowedRegistries = []string{"registry.example.com", "mirror.example.com/kube"} }, ""},
		{"valid with protected networks", func(o *Options) { o.ProtectedNetworks = []string{"10.200.0.0/16", "10.199.0.1"} }, ""},
		{"valid without leader election", func(o *Options) { o.LeaderElection = false }, ""},
		{"valid with a datastore", func(o *Options) { o.Datastore = testDatastore() }, ""},
		{"valid with no replica", func(o *Options) { o.Replicas = 0 }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions()
			tt.change(&o)
			_, err := Render(o)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want one naming %s", err, tt.want)
			}
		})
	}
}

func TestWrite(t *testing.T) {
	o := testOptions()
	o.Datastore = testDatastore()
	o.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")}
	objs, err := Render(o)
	if err != nil {
		t.Fatal(err)
	}
	want := make([]map[string]any, len(objs))
	for i, u := range objs {
		// Through JSON, as both decoders below see the objects.
		data, _ := json.Marshal(u.Object)
		_ = json.Unmarshal(data, &want[i])
	}

	var y bytes.Buffer
	if err := Write(&y, objs, "yaml"); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(y.String(), "---\n")
	if docs[0] != "" {
		t.Fatalf("YAML does not start with a document separator: %q", docs[0])
	}
	if len(docs)-1 != len(objs) {
		t.Fatalf("YAML has %d documents, want %d", len(docs)-1, len(objs))
	}
	for i, doc := range docs[1:] {
		var got map[string]any
		if err := yaml.Unmarshal([]byte(doc), &got); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		if !equalJSON(got, want[i]) {
			t.Errorf("YAML document %d differs from %s %s", i, objs[i].GetKind(), objs[i].GetName())
		}
	}

	var j bytes.Buffer
	if err := Write(&j, objs, "json"); err != nil {
		t.Fatal(err)
	}
	var list struct {
		APIVersion string           `json:"apiVersion"`
		Kind       string           `json:"kind"`
		Items      []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(j.Bytes(), &list); err != nil {
		t.Fatal(err)
	}
	if list.APIVersion != "v1" || list.Kind != "List" || len(list.Items) != len(objs) {
		t.Fatalf("JSON is a %s %s of %d items, want a v1 List of %d", list.APIVersion, list.Kind, len(list.Items), len(objs))
	}
	for i := range objs {
		if !equalJSON(list.Items[i], want[i]) {
			t.Errorf("JSON item %d differs from %s %s", i, objs[i].GetKind(), objs[i].GetName())
		}
	}

	if err := Write(&bytes.Buffer{}, objs, "table"); err == nil || !strings.Contains(err.Error(), "use yaml or json") {
		t.Errorf("unknown format: error = %v, want one listing yaml and json", err)
	}
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
