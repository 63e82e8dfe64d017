package tenantcluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/testenv"
)

// TestApplyAddonsCustomResourcesInOnePass applies, against a real API
// server, a CRD of a new group, a custom resource of it and ordinary
// objects in one call: the custom resource waits for its CRD to be
// established within the pass, so the bootstrap does not come back a
// reconcile later for it. A second pass, which skips the CRD it finds
// stamped with the same hash, succeeds as well.
func TestApplyAddonsCustomResourcesInOnePass(t *testing.T) {
	t.Parallel()
	api := testenv.SharedAPIServer(t)
	ctx := context.Background()
	group := fmt.Sprintf("g%d.addons.test.kubinception.dev", time.Now().UnixNano())
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "addons-"}}
	if err := api.Client.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	objs := func() []client.Object {
		crd := &apiextensionsv1.CustomResourceDefinition{
			TypeMeta:   metav1.TypeMeta{APIVersion: "apiextensions.k8s.io/v1", Kind: "CustomResourceDefinition"},
			ObjectMeta: metav1.ObjectMeta{Name: "widgets." + group},
			Spec: apiextensionsv1.CustomResourceDefinitionSpec{
				Group: group,
				Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Singular: "widget", Kind: "Widget", ListKind: "WidgetList"},
				Scope: apiextensionsv1.ClusterScoped,
				Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{
					Name: "v1", Served: true, Storage: true,
					Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
						Type: "object", XPreserveUnknownFields: ptr.To(true),
					}},
				}},
			},
		}
		widget := &unstructured.Unstructured{}
		widget.SetAPIVersion(group + "/v1")
		widget.SetKind("Widget")
		widget.SetName("default")
		widget.Object["spec"] = map[string]any{"size": int64(3)}
		var out []client.Object
		// The custom resource comes before its CRD, as an addon may
		// list it: the order of the list must not matter.
		out = append(out, widget)
		for i := range 12 {
			out = append(out, &corev1.ConfigMap{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%d", i), Namespace: ns.Name},
				Data:       map[string]string{"i": fmt.Sprint(i)},
			})
		}
		return append(out, crd)
	}
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "addons", Namespace: ns.Name}}
	r := &Reconciler{}
	for pass := range 2 {
		s := newScope(tc, time.Now())
		res, err := r.applyAddons(ctx, s, tenantClient{c: api.Client}, objs(), nil)
		if err != nil || !res.IsZero() {
			t.Fatalf("pass %d: applyAddons = %v, %v (AddonsReady: %+v); want everything applied in the pass", pass, res, err, s.results[kv1.ConditionAddonsReady])
		}
		w := &unstructured.Unstructured{}
		w.SetAPIVersion(group + "/v1")
		w.SetKind("Widget")
		if err := api.Client.Get(ctx, client.ObjectKey{Name: "default"}, w); err != nil {
			t.Fatalf("pass %d: the custom resource: %v", pass, err)
		}
		if size, _, _ := unstructured.NestedInt64(w.Object, "spec", "size"); size != 3 {
			t.Errorf("pass %d: the custom resource's spec.size = %d, want 3", pass, size)
		}
		var cms corev1.ConfigMapList
		if err := api.Client.List(ctx, &cms, client.InNamespace(ns.Name)); err != nil {
			t.Fatal(err)
		}
		if len(cms.Items) != 12 {
			t.Errorf("pass %d: %d ConfigMaps in %s, want the 12 applied", pass, len(cms.Items), ns.Name)
		}
	}
	t.Cleanup(func() {
		_ = api.Client.Delete(context.Background(), &apiextensionsv1.CustomResourceDefinition{ObjectMeta: metav1.ObjectMeta{Name: "widgets." + group}})
		_ = api.Client.Delete(context.Background(), ns)
	})
}
