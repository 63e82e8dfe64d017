// Package datastorecontroller reports the health of each Datastore and how
// many tenants it holds.
package datastorecontroller
