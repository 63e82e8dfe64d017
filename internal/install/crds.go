package install

import (
	"embed"
	"fmt"
	"io/fs"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/release"
)

// CRDDir is the directory of the CRD files, relative to this package; the
// Helm chart's crds/ directory holds the same files.
const CRDDir = "crds"

//go:embed crds/*.yaml
var crdFiles embed.FS

// tenantClusterCRDName is the TenantCluster CRD's name.
var tenantClusterCRDName = "tenantclusters." + kv1.GroupVersion.Group

// CRDs returns the CustomResourceDefinitions, in file name order.
func CRDs() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	err := fs.WalkDir(crdFiles, CRDDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := crdFiles.ReadFile(path)
		if err != nil {
			return err
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// CRDFiles returns the embedded CRD files by base name, as hack/generate
// wrote them.
func CRDFiles() (map[string][]byte, error) {
	entries, err := crdFiles.ReadDir(CRDDir)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := crdFiles.ReadFile(CRDDir + "/" + e.Name())
		if err != nil {
			return nil, err
		}
		out[e.Name()] = data
	}
	return out, nil
}

// FinalizeCRD turns a CRD as controller-gen writes it into the file this
// package embeds: on the TenantCluster CRD it writes spec.version's
// default, description and validation rule from the release policy, so the
// supported Kubernetes releases are listed once, in internal/release. The
// output has sorted keys; applying FinalizeCRD to its own output changes
// nothing, which is how a test tells that the files are up to date.
func FinalizeCRD(data []byte) ([]byte, error) {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &u.Object); err != nil {
		return nil, fmt.Errorf("parse CRD: %w", err)
	}
	if u.GetKind() != "CustomResourceDefinition" {
		return nil, fmt.Errorf("not a CustomResourceDefinition but %q", u.GetKind())
	}
	if u.GetName() == tenantClusterCRDName {
		if err := setVersionPolicy(u); err != nil {
			return nil, fmt.Errorf("CRD %s: %w", u.GetName(), err)
		}
	}
	out, err := yaml.Marshal(u.Object)
	if err != nil {
		return nil, fmt.Errorf("CRD %s: %w", u.GetName(), err)
	}
	return append([]byte("---\n"), out...), nil
}

// VersionRule is the CEL rule on a TenantCluster's spec.version: the
// release policy's pattern as a CEL string literal.
func VersionRule() string {
	return "self.matches('" + celString(release.SupportedVersionPattern()) + "')"
}

// VersionMessage is what the API server answers when spec.version is not
// a supported release.
func VersionMessage() string {
	minors := release.SupportedMinors()
	names := make([]string, len(minors))
	for i, m := range minors {
		names[i] = fmt.Sprintf("v1.%d.x", m)
	}
	list := names[len(names)-1]
	if len(names) > 1 {
		list = strings.Join(names[:len(names)-1], ", ") + " or " + list
	}
	return fmt.Sprintf("spec.version must be a supported Kubernetes release: %s, e.g. %s", list, release.DefaultKubernetesVersion)
}

// VersionDescription is spec.version's description in the CRD, the text
// `kubectl explain` shows.
func VersionDescription() string {
	return fmt.Sprintf("Version is the Kubernetes release of the control plane.\nSupported: %s; the default is %s.",
		release.SupportedMinorsText(), release.DefaultKubernetesVersion)
}

// setVersionPolicy writes the version policy into every version of the
// TenantCluster CRD's schema.
func setVersionPolicy(crd *unstructured.Unstructured) error {
	versions, _, err := unstructured.NestedSlice(crd.Object, "spec", "versions")
	if err != nil || len(versions) == 0 {
		return fmt.Errorf("no spec.versions (%v)", err)
	}
	path := []string{"schema", "openAPIV3Schema", "properties", "spec", "properties", "version"}
	for i, v := range versions {
		version, ok := v.(map[string]any)
		if !ok {
			return fmt.Errorf("spec.versions[%d] is not an object", i)
		}
		field, ok, err := unstructured.NestedMap(version, path...)
		if err != nil || !ok {
			return fmt.Errorf("spec.versions[%d] has no %s (%v)", i, strings.Join(path, "."), err)
		}
		field["default"] = release.DefaultKubernetesVersion
		field["description"] = VersionDescription()
		field["x-kubernetes-validations"] = []any{map[string]any{"rule": VersionRule(), "message": VersionMessage()}}
		if err := unstructured.SetNestedMap(version, field, path...); err != nil {
			return err
		}
		versions[i] = version
	}
	return unstructured.SetNestedSlice(crd.Object, versions, "spec", "versions")
}

// celString escapes s for a single-quoted CEL string literal.
func celString(s string) string {
	return strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s)
}
