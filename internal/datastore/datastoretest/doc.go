// Package datastoretest holds test scenarios about the shared datastore,
// written once against a Target (the way etcd's test framework writes its
// scenarios against a cluster interface) and run both against the
// datastore directly and through the etcd gateway.
package datastoretest
