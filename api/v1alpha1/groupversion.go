package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// GroupVersion is the API group and version of kubinception's objects.
var GroupVersion = schema.GroupVersion{Group: "kubinception.dev", Version: "v1alpha1"}

var (
	schemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)
	// AddToScheme registers this group's types.
	AddToScheme = schemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &TenantCluster{}, &TenantClusterList{}, &Datastore{}, &DatastoreList{}, &TenantBackup{}, &TenantBackupList{}, &TenantRestore{}, &TenantRestoreList{})
	metav1AddToGroupVersion(s)
	return nil
}
