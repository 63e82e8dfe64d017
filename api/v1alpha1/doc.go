// Package v1alpha1 is the kubinception.dev/v1alpha1 API: TenantCluster, a
// customer cluster whose control plane runs as pods in the admin cluster,
// and Datastore, a shared etcd cluster that holds many tenants' state.
//
// +kubebuilder:object:generate=true
// +groupName=kubinception.dev
package v1alpha1
