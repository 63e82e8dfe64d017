package install

import (
	"fmt"
	"net"
	"slices"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/netpolicy"
	"kubinception.dev/kubinception/internal/release"
)

// Namespace is where the operator runs.
const Namespace = "kubinception-system"

// Name of the operator's Deployment, service account and RBAC objects.
const Name = "kubinception-manager"

// OperatorLabels select the operator's pods in Namespace; the Helm chart
// labels them the same. Tenants' NetworkPolicies let these pods, and no
// others, reach every port of a control plane.
func OperatorLabels() map[string]string { return map[string]string{"app.kubernetes.io/name": Name} }

// GatewayName is the service account and cluster role of the Datastores'
// gateways (the operator runs one per Datastore in Namespace).
const GatewayName = gatewaydeploy.ServiceAccount

// MetricsReaderName is the ClusterRole that may scrape the operator's
// metrics (get on /metrics); bind it to a monitoring service account.
const MetricsReaderName = "kubinception-metrics-reader"

// MetricsPort serves the operator's metrics over https, to bearer tokens
// allowed to get /metrics only.
const MetricsPort = 8080

// DefaultDatastoreName is the name of the Datastore an installation may
// create, the one tenants are placed on unless they name another.
const DefaultDatastoreName = "default"

// Options shape an installation. Each field is a flag of
// `kubinception install` and a value of the Helm chart in
// deploy/helm/kubinception; a test renders both and compares them.
type Options struct {
	// Image is the operator's image reference.
	Image string
	// ImagePullPolicy is the operator container's pull policy.
	ImagePullPolicy corev1.PullPolicy
	// Registry is where tenant control-plane images come from.
	Registry string
	// AllowedRegistries are the registries a TenantCluster may name in
	// spec.controlPlane.imageRegistry; empty allows Registry only.
	AllowedRegistries []string
	// Replicas of the operator; more than one needs LeaderElection.
	Replicas int32
	// LeaderElection makes replicas elect one leader that reconciles.
	LeaderElection bool
	// Resources of the operator container.
	Resources corev1.ResourceRequirements
	// Datastore, when set, is created as the Datastore named "default".
	Datastore *kv1.DatastoreSpec
	// LoadBalancerAddressPool, when set, is the CIDR the operator takes
	// the addresses of its LoadBalancer Services from (an admin cluster
	// without a load-balancer implementation routes it to its nodes).
	LoadBalancerAddressPool string
	// ProtectedNetworks are the admin cluster's own networks (its pod
	// ranges, its nodes' addresses), IPv4 CIDRs that the API server of a
	// tenant without the tunnel may not reach. Empty leaves that API
	// server free to dial anything, the admin cluster included. Rendered
	// as given; the operator normalises the list.
	ProtectedNetworks []string
	// FrontDoor is the one endpoint of tenants exposed as FrontDoor;
	// none when its Domain is empty.
	FrontDoor FrontDoorOptions
	// Backup is where TenantBackups keep their archives.
	Backup BackupOptions
}

// DefaultOptions are the options `kubinception install` starts from; the
// chart's values.yaml holds the same defaults. Image is left empty: it
// depends on where the operator runs.
func DefaultOptions() Options {
	return Options{
		ImagePullPolicy: corev1.PullIfNotPresent,
		Registry:        release.LocalRegistry,
		FrontDoor:       DefaultFrontDoor(),
		Replicas:        1,
		LeaderElection:  true,
		Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
			corev1.ResourceCPU: resource.MustParse("20m"), corev1.ResourceMemory: resource.MustParse("64Mi"),
		}},
	}
}

// Validate says what is wrong with the options, naming the flag of
// `kubinception install` that sets the field.
func (o Options) Validate() error {
	switch {
	case strings.TrimSpace(o.Image) == "" || strings.ContainsAny(o.Image, " \t\n"):
		return fmt.Errorf("--image %q is not an image reference: give one such as registry.example.com/kubinception:v0.1.0", o.Image)
	case o.ImagePullPolicy != corev1.PullAlways && o.ImagePullPolicy != corev1.PullIfNotPresent && o.ImagePullPolicy != corev1.PullNever:
		return fmt.Errorf("--image-pull-policy %q is not a pull policy: use Always, IfNotPresent or Never", o.ImagePullPolicy)
	case o.Registry == "" || strings.ContainsAny(o.Registry, " \t\n@"):
		return fmt.Errorf("--image-registry %q is not valid: give a host name such as %s or registry.k8s.io", o.Registry, release.LocalRegistry)
	case slices.ContainsFunc(o.AllowedRegistries, func(r string) bool { return r == "" || strings.ContainsAny(r, " \t\n@,") }):
		return fmt.Errorf("--allowed-registries %q: give registry host names (and paths) such as %s,registry.example.com/kube", strings.Join(o.AllowedRegistries, ","), release.LocalRegistry)
	case o.Replicas < 0:
		return fmt.Errorf("--replicas %d: give 0 or more", o.Replicas)
	case o.Replicas > 1 && !o.LeaderElection:
		return fmt.Errorf("--replicas %d needs --leader-elect: without it every replica would reconcile the same tenants", o.Replicas)
	}
	if o.LoadBalancerAddressPool != "" {
		if _, _, err := net.ParseCIDR(o.LoadBalancerAddressPool); err != nil {
			return fmt.Errorf("--load-balancer-address-pool %q is not a CIDR: give one such as 10.199.128.0/20", o.LoadBalancerAddressPool)
		}
	}
	if _, err := netpolicy.ParseProtectedNetworks(o.ProtectedNetworks); err != nil {
		return err
	}
	if err := o.FrontDoor.validate(); err != nil {
		return err
	}
	if err := o.Backup.validate(); err != nil {
		return err
	}
	if d := o.Datastore; d != nil {
		if len(d.Endpoints) == 0 {
			return fmt.Errorf("--datastore-endpoints is empty: list the datastore members' client URLs, such as https://10.0.0.1:2379,https://10.0.0.2:2379")
		}
		for _, e := range d.Endpoints {
			if !strings.HasPrefix(e, "https://") || strings.ContainsAny(strings.TrimPrefix(e, "https://"), "/ \t") {
				return fmt.Errorf("--datastore-endpoints: %q is not an https URL of a datastore member: give one such as https://10.0.0.1:2379", e)
			}
		}
		for flag, ref := range map[string]kv1.SecretReference{"--datastore-ca-secret": d.CASecretRef, "--datastore-root-secret": d.RootSecretRef} {
			if ref.Name == "" || ref.Namespace == "" {
				return fmt.Errorf("%s is empty: give NAMESPACE/NAME of the Secret", flag)
			}
		}
	}
	return nil
}

// Render returns every object of an installation, in the order Apply
// applies them: the CRDs, the namespace, service account, RBAC, the
// operator's Deployment and, when asked for, the Datastore "default".
// `kubinception install --dry-run` prints exactly this list.
func Render(o Options) ([]*unstructured.Unstructured, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	out, err := CRDs()
	if err != nil {
		return nil, err
	}
	for _, obj := range objects(o) {
		u, err := toUnstructured(obj)
		if err != nil {
			return nil, fmt.Errorf("render %T: %w", obj, err)
		}
		out = append(out, u)
	}
	return out, nil
}

// objects are the installation's objects other than the CRDs.
func objects(o Options) []client.Object {
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
				// TenantBackups: copied, their archives deleted with them;
				// TenantRestores: carried out.
				// TenantBackups: also made and pruned by schedules.
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantbackups"}, Verbs: rw},
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantrestores"}, Verbs: []string{"get", "list", "watch", "update", "patch"}},
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantbackups/status", "tenantrestores/status"}, Verbs: []string{"get", "update", "patch"}},
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantbackups/finalizers"}, Verbs: []string{"update"}},
				{APIGroups: []string{""}, Resources: []string{"secrets", "services"}, Verbs: rw},
				// Addresses of its LoadBalancer Services, from its pool.
				{APIGroups: []string{""}, Resources: []string{"services/status"}, Verbs: []string{"get", "patch", "update"}},
				{APIGroups: []string{"apps"}, Resources: []string{"deployments"}, Verbs: rw},
				{APIGroups: []string{""}, Resources: []string{"pods", "nodes"}, Verbs: ro},
				// Each tenant's NetworkPolicies, server-side applied (which
				// creates them too); the garbage collector deletes them with
				// their TenantCluster.
				{APIGroups: []string{"networking.k8s.io"}, Resources: []string{"networkpolicies"}, Verbs: []string{"create", "patch"}},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
				{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
				// Its metrics endpoint authenticates scrapers' tokens and
				// asks whether they may get /metrics.
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
			}},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: Name, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: Name},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}}},
		// Bound by a platform's monitoring to whatever scrapes the
		// operator's metrics: nothing else may read them.
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: metav1.ObjectMeta{Name: MetricsReaderName, Labels: labels},
			Rules: []rbacv1.PolicyRule{{NonResourceURLs: []string{"/metrics"}, Verbs: []string{"get"}}}},
		// The gateways read, and only read, the limits of the tenants
		// they serve.
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: GatewayName, Namespace: Namespace, Labels: labels}},
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: metav1.ObjectMeta{Name: GatewayName, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{kv1.GroupVersion.Group}, Resources: []string{"tenantclusters", "datastores"}, Verbs: ro},
			}},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: GatewayName, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: GatewayName},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: GatewayName, Namespace: Namespace}}},
		&rbacv1.Role{TypeMeta: tm("rbac.authorization.k8s.io/v1", "Role"), ObjectMeta: metav1.ObjectMeta{Name: Name + "-leader-election", Namespace: Namespace, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: rw},
				{APIGroups: []string{""}, Resources: []string{"events"}, Verbs: []string{"create", "patch"}},
			}},
		&rbacv1.RoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "RoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: Name + "-leader-election", Namespace: Namespace, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: Name + "-leader-election"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: Name, Namespace: Namespace}}},
		deployment(o, labels),
	}
	objs = append(objs, consoleObjects(o)...)
	objs = append(objs, frontDoorObjects(o)...)
	if o.Datastore != nil {
		objs = append(objs, &kv1.Datastore{TypeMeta: tm(kv1.GroupVersion.String(), "Datastore"),
			ObjectMeta: metav1.ObjectMeta{Name: DefaultDatastoreName, Labels: labels}, Spec: *o.Datastore})
	}
	return objs
}

// deployment is the operator's Deployment.
func deployment(o Options, labels map[string]string) *appsv1.Deployment {
	replicas := o.Replicas
	nonRoot, uid := true, int64(65534)
	noEscalation := false
	probe := func(path string) *corev1.Probe {
		return &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: path, Port: intstr.FromInt32(8081)}}, PeriodSeconds: 10}
	}
	sel := OperatorLabels()
	args := []string{"manager", fmt.Sprintf("--leader-elect=%t", o.LeaderElection), "--image-registry=" + o.Registry,
		// Each Datastore's gateway runs the operator's own image.
		"--gateway-namespace=" + Namespace, "--gateway-image=" + o.Image, "--gateway-image-pull-policy=" + string(o.ImagePullPolicy)}
	if o.LoadBalancerAddressPool != "" {
		args = append(args, "--load-balancer-address-pool="+o.LoadBalancerAddressPool)
	}
	if len(o.AllowedRegistries) > 0 {
		args = append(args, "--allowed-registries="+strings.Join(o.AllowedRegistries, ","))
	}
	if len(o.ProtectedNetworks) > 0 {
		args = append(args, "--protected-networks="+strings.Join(o.ProtectedNetworks, ","))
	}
	if o.FrontDoor.Domain != "" {
		args = append(args, "--front-door-domain="+o.FrontDoor.Domain, fmt.Sprintf("--front-door-port=%d", o.FrontDoor.ClientPort()))
	}
	var volumes []corev1.Volume
	var mounts []corev1.VolumeMount
	if v, flags := o.Backup.volume(); v != nil {
		args = append(args, flags...)
		volumes = append(volumes, *v)
		mounts = append(mounts, corev1.VolumeMount{Name: v.Name, MountPath: BackupMountPath})
	}
	args = append(args, o.Backup.S3.flags()...)
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
					Volumes:            volumes,
					Containers: []corev1.Container{{
						Name:            "manager",
						Image:           o.Image,
						ImagePullPolicy: o.ImagePullPolicy,
						Args:            args,
						Ports: []corev1.ContainerPort{
							{Name: "metrics", ContainerPort: MetricsPort}, {Name: "health", ContainerPort: 8081},
						},
						LivenessProbe:  probe("/healthz"),
						ReadinessProbe: probe("/readyz"),
						Resources:      o.Resources,
						VolumeMounts:   mounts,
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

// toUnstructured converts a typed object to what is applied and printed:
// without status and without the empty structs Go's zero values leave
// (a Namespace's spec, a Deployment's strategy), so the output reads as a
// person would write it and as the chart renders it.
func toUnstructured(obj client.Object) (*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	unstructured.RemoveNestedField(u.Object, "metadata", "creationTimestamp")
	unstructured.RemoveNestedField(u.Object, "status")
	if u.GroupVersionKind().Group == kv1.GroupVersion.Group {
		// Our own kinds hold nested structs by value, so an empty object
		// and an absent one mean the same to the operator; the CRD's
		// defaults fill both alike.
		pruneEmpty(u.Object)
	}
	for _, path := range [][]string{{"spec", "strategy"}, {"spec", "template", "metadata", "creationTimestamp"}, {"spec"}} {
		if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, path...); ok && (v == nil || isEmptyMap(v)) {
			unstructured.RemoveNestedField(u.Object, path...)
		}
	}
	return u, nil
}

// pruneEmpty removes null values and empty objects from m, depth first.
func pruneEmpty(m map[string]any) {
	for k, v := range m {
		if child, ok := v.(map[string]any); ok {
			pruneEmpty(child)
		}
		if v == nil || isEmptyMap(v) {
			delete(m, k)
		}
	}
}

func isEmptyMap(v any) bool {
	m, ok := v.(map[string]any)
	return ok && len(m) == 0
}
