// Package console serves kubinception's web console and the few HTTP
// endpoints behind it that the Kubernetes API cannot express.
//
// The console holds no authority of its own over tenants. A user signs in
// with a credential the admin cluster itself accepts (a bearer token,
// checked with a TokenReview, or a client certificate verified against
// the admin cluster's client CA); every request is then made to the admin
// cluster as that user through impersonation, so the admin cluster's RBAC
// decides what each user sees and does. The console's own identity needs
// only to impersonate and to create TokenReviews.
//
// The pages talk to the Kubernetes API (TenantCluster, Datastore, Events)
// through /kube/, an allow-listed, impersonating proxy; live lists come as
// server-sent events from a watch made as the user; issuing a kubeconfig,
// a join command and listing a tenant's nodes are endpoints under
// /console/api/ that perform their reads as the user.
package console
