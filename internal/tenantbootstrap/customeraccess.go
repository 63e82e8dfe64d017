package tenantbootstrap

import (
	rbacv1 "k8s.io/api/rbac/v1"

	"kubinception.dev/kubinception/internal/kubeconfig"
)

// CustomerAdminsBinding names the ClusterRoleBinding that makes customer
// credentials cluster-admin inside a tenant.
const CustomerAdminsBinding = "kubinception:customer-admins"

// CustomerAccessAddon labels the objects of customer access.
const CustomerAccessAddon = "customer-access"

// CustomerAdmins binds cluster-admin to the customer group of generation
// gen, and to no other: applying it for a new generation replaces the
// subject in one write, so the previous generation loses everything at the
// moment the new one gains it. A binding (not system:masters) is what
// makes customer credentials revocable: the API server's RBAC authorizer
// follows bindings as they change.
func CustomerAdmins(gen int) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: meta(CustomerAdminsBinding, "", CustomerAccessAddon),
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: kubeconfig.CustomerGroup(gen)}},
	}
}
