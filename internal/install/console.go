package install

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// ConsoleName names the web console's Deployment, Service, service
// account and cluster role in Namespace.
const ConsoleName = "kubinception-console"

// ConsolePort is where the console serves HTTPS in its pod; its Service
// answers on 443.
const ConsolePort = 8443

// ConsoleLabels select the console's pods. They differ from
// OperatorLabels on purpose: the tenants' NetworkPolicies let the
// operator's pods, not the console's, reach control planes.
func ConsoleLabels() map[string]string {
	return map[string]string{"app.kubernetes.io/name": ConsoleName, "app.kubernetes.io/managed-by": "kubinception"}
}

// ConsoleRules are all the console's service account may do: create
// TokenReviews to learn who a bearer token belongs to, and impersonate
// that user (name, uid, groups). It reads nothing itself:
// every read and write is made as the signed-in user, whom RBAC judges.
func ConsoleRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
		{APIGroups: []string{""}, Resources: []string{"users", "groups", "serviceaccounts"}, Verbs: []string{"impersonate"}},
		{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"uids"}, Verbs: []string{"impersonate"}},
	}
}

// consoleObjects are the console's service account, RBAC, Deployment and
// Service. It runs the operator's image, one replica: sessions live in
// the replica's memory.
func consoleObjects(o Options) []client.Object {
	labels := ConsoleLabels()
	replicas := int32(1)
	nonRoot, uid := true, int64(65534)
	noEscalation := false
	probe := &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
		Path: "/healthz", Port: intstr.FromInt32(ConsolePort), Scheme: corev1.URISchemeHTTPS}}, PeriodSeconds: 10}
	return []client.Object{
		&corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: metav1.ObjectMeta{Name: ConsoleName, Namespace: Namespace, Labels: labels}},
		&rbacv1.ClusterRole{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRole"), ObjectMeta: metav1.ObjectMeta{Name: ConsoleName, Labels: labels},
			Rules: ConsoleRules()},
		&rbacv1.ClusterRoleBinding{TypeMeta: tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"), ObjectMeta: metav1.ObjectMeta{Name: ConsoleName, Labels: labels},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: ConsoleName},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: ConsoleName, Namespace: Namespace}}},
		&appsv1.Deployment{
			TypeMeta:   tm("apps/v1", "Deployment"),
			ObjectMeta: metav1.ObjectMeta{Name: ConsoleName, Namespace: Namespace, Labels: labels},
			Spec: appsv1.DeploymentSpec{
				Replicas: &replicas,
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app.kubernetes.io/name": ConsoleName}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						ServiceAccountName: ConsoleName,
						SecurityContext:    &corev1.PodSecurityContext{RunAsNonRoot: &nonRoot, RunAsUser: &uid, RunAsGroup: &uid},
						Containers: []corev1.Container{{
							Name:            "console",
							Image:           o.Image,
							ImagePullPolicy: o.ImagePullPolicy,
							Args:            []string{"console", "--listen=:8443"},
							Ports:           []corev1.ContainerPort{{Name: "https", ContainerPort: ConsolePort}},
							LivenessProbe:   probe,
							ReadinessProbe:  probe,
							Resources: corev1.ResourceRequirements{Requests: corev1.ResourceList{
								corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi"),
							}},
							SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: &noEscalation,
								Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
						}},
					},
				},
			},
		},
		&corev1.Service{
			TypeMeta:   tm("v1", "Service"),
			ObjectMeta: metav1.ObjectMeta{Name: ConsoleName, Namespace: Namespace, Labels: labels},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app.kubernetes.io/name": ConsoleName},
				Ports:    []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromString("https")}},
			},
		},
	}
}
