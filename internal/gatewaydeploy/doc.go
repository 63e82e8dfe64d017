// Package gatewaydeploy renders the admin-cluster objects that run one
// Datastore's etcd gateway: its Deployment, its Service, and the Secrets
// holding its serving certificate, the CA that identifies tenants and its
// credential on the datastore. Rendering is pure; the Datastore reconciler
// applies the result.
package gatewaydeploy
