package install

import (
	"context"
	"embed"
	"fmt"
	"io"
	"io/fs"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

//go:embed crds/*.yaml
var crdFiles embed.FS

// Namespace is where the operator runs.
const Namespace = "kubinception-system"

// Name of the operator's Deployment, service account and RBAC objects.
const Name = "kubinception-manager"

// Options shape an installation.
type Options struct {
	// Image is the operator's image.
	Image string
	// Registry is where tenant control-plane images come from.
	Registry string
	// Datastore, when set, is created as the Datastore named "default".
	Datastore *kv1.DatastoreSpec
}

// CRDs returns the CustomResourceDefinitions.
func CRDs() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	err := fs.WalkDir(crdFiles, "crds", func(path string, d fs.DirEntry, err error) error {
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

// Objects renders everything but the CRDs, in the order they are applied.
func Objects(o Options) []client.Object {
	labels := map[string]string{"app.kubernetes.io/name": Name, "app.kubernetes.io/managed-by": "kubinception"}
	rw := []string{"get", "list", "watch", "create", "update", "patch", "delete"}
	ro := []string{"get", "list", "watch"}
	objs := []client.Object{
		&corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: labels}},
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: labels}},
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantclusters", "datastores"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantclusters/status", "datastores/status"}, Verbs: []string{"get", "update", "patch"}},
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantclusters/finalizers"}, Verbs: []string{"update"}},
				{APIGroups: []string{""}, Resources: []string{"secrets", "services"}, Verbs: rw},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: rw},
				{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: ro},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			}},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}}},
		&rbacv1.Role{TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: metav1.ObjectMeta{Name: Name + "-leader-election", Namespace: Namespace, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: rw},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			}},
		&rbacv1.RoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: Name + "-leader-election", Namespace: Namespace, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name + "-leader-election"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}}},
		Deployment(o, labels),
	}
	if o.Datastore != nil {
		objs = append(objs, &kv1.Datastore{TypeMeta: tm(kv1.GroupVersion.String(), "Datastore"), ObjectMeta: metav1.ObjectMeta{Name: "default", Labels: labels}, Spec: *o.Datastore})
	}
	return objs
}

// Deployment is the operator's Deployment.
func Deployment(o Options, labels map[string]string) *appsv1.Deployment {
	replicas := int32(1)
	nonRoot, uid := true, int64(65534)
	noEscalation := false
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8081)}}, PeriodSeconds: 10}
	}
	sel := map[string]string{"app.kubernetes.io/name": Name}
	return &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: Namespace, Labels: labels},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: sel},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: Name,
					SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, RunAsUser: &uid, RunAsGroup: &uid},
					Containers: []corev1.Container{{
						Name:            "manager",
						Image:           o.Image,
						ImagePullPolicy: corev1.PullIfNotPresent,
						Args:            []string{"manager", "--leader-elect", "--image-registry=" + o.Registry},
						Ports: []corev1.ContainerPort{
							{Name: "metrics", ContainerPort: 8080}, {Name: "health", ContainerPort: 8081},
						},
						LivenessProbe:  probe("/healthz"),
						ReadinessProbe: probe("/readyz"),
						Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
							corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
						}},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &noEscalation,
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
					}},
				},
			},
		},
	}
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

// Apply installs everything with server-side apply, waiting for the CRDs
// to be established before creating objects of their kinds, and then for
// the operator to be available.
func Apply(ctx context.Context, c client.Client, o Options, out io.Writer) error {
	crds, err := CRDs()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if err := apply(ctx, c, crd); err != nil {
			return fmt.Errorf("apply CRD %s: %w", crd.GetName(), err)
		}
		fmt.Fprintf(out, "✓ CustomResourceDefinition %s\n", crd.GetName())
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, c, crd.GetName()); err != nil {
			return err
		}
	}
	for _, obj := range Objects(o) {
		u, err := toUnstructured(obj)
		if err != nil {
			return err
		}
		if err := apply(ctx, c, u); err != nil {
			return fmt.Errorf("apply %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		fmt.Fprintf(out, "✓ %s %s\n", u.GetKind(), u.GetName())
	}
	return waitAvailable(ctx, c, out)
}

func toUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	return u, nil
}

func apply(ctx context.Context, c client.Client, u *unstructured.Unstructured) error {
	//nolint:staticcheck // unstructured server-side apply
	return c.Patch(ctx, u, client.Apply, client.ForceOwnership, client.FieldOwner("kubinception-install"))
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	return poll(ctx, 60*time.Second, "CRD "+name+" to be established", func() (bool, error) {
		u := &unstructured.Unstructured{}
		u.SetAPIVersion("apiextensions.k8s.io/v1")
		u.SetKind("CustomResourceDefinition")
		if err := c.Get(ctx, types.NamespacedName{Name: name}, u); err != nil {
			return false, nil
		}
		conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		for _, cond := range conds {
			m, _ := cond.(map[string]any)
			if m["type"] == "Established" && m["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}

func waitAvailable(ctx context.Context, c client.Client, out io.Writer) error {
	var last string
	err := poll(ctx, 3*time.Minute, "the operator to be available", func() (bool, error) {
		dep := &appsv1.Deployment{}
		if err := c.Get(ctx, types.NamespacedName{Namespace: Namespace, Name: Name}, dep); err != nil {
			return false, nil
		}
		last = fmt.Sprintf("%d/%d replicas available", dep.Status.AvailableReplicas, *dep.Spec.Replicas)
		return dep.Status.ObservedGeneration >= dep.Generation && dep.Status.UpdatedReplicas == *dep.Spec.Replicas &&
			dep.Status.AvailableReplicas == *dep.Spec.Replicas && dep.Status.UnavailableReplicas == 0, nil
	})
	if err != nil {
		var pods corev1.PodList
		_ = c.List(ctx, &pods, client.InNamespace(Namespace), client.MatchingLabels{"app.kubernetes.io/name": Name})
		for _, p := range pods.Items {
			for _, cs := range p.Status.ContainerStatuses {
				if cs.State.Waiting != nil {
					last += fmt.Sprintf("; pod %s: %s %s", p.Name, cs.State.Waiting.Reason, cs.State.Waiting.Message)
				}
			}
		}
		return fmt.Errorf("%w (%s)", err, last)
	}
	fmt.Fprintf(out, "✓ operator available (%s)\n", last)
	return nil
}

func poll(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	err := wait.PollUntilContextTimeout(ctx, 500*time.Millisecond, timeout, true, func(context.Context) (bool, error) { return cond() })
	if wait.Interrupted(err) {
		return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
	}
	return err
}
