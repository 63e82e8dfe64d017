package tenantbootstrap

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
)

func TestCustomerAdmins(t *testing.T) {
	b := CustomerAdmins(3)
	want := []rbacv1.Subject{{Kind: "Group", APIGroup: "rbac.authorization.k8s.io", Name: "kubinception:customer-admins:g3"}}
	if b.Name != CustomerAdminsBinding || b.RoleRef.Kind != "ClusterRole" || b.RoleRef.Name != "cluster-admin" {
		t.Errorf("binding %s -> %+v, want %s -> ClusterRole cluster-admin", b.Name, b.RoleRef, CustomerAdminsBinding)
	}
	if len(b.Subjects) != 1 || b.Subjects[0] != want[0] {
		t.Errorf("subjects %+v, want only %+v: earlier generations must lose the binding", b.Subjects, want)
	}
	if b.Labels[ManagedLabel] != CustomerAccessAddon || b.Kind != "ClusterRoleBinding" {
		t.Errorf("labels %v, kind %q", b.Labels, b.Kind)
	}
}
