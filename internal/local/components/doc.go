// Package components builds the Kubernetes, etcd and CoreDNS binaries the
// local admin cluster and its tenants run, from their upstream Go modules,
// into a cache outside kubinception's own module.
package components
