// Package install renders and applies what runs kubinception in an admin
// cluster: the CRDs, the operator's namespace, service account, RBAC and
// Deployment, and optionally the "default" Datastore.
package install
