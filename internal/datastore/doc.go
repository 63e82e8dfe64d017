// Package datastore owns every interaction with the shared multi-tenant
// etcd: connecting with TLS client certificates, enabling authentication
// with a root user, and reporting member health. Controllers never build
// etcd keys or users themselves; they ask this package.
package datastore
