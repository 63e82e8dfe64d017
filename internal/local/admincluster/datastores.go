package admincluster

import (
	"fmt"
	"net"
	"strconv"
	"strings"
)

// MaxDatastores is how many datastores `admin up --datastores` runs at
// most: enough to move tenants between them, few enough for one machine.
const MaxDatastores = 3

// datastorePortStride separates the ports of consecutive datastores:
// datastore k's member i serves clients on DatastoreClient+20k+i and
// peers on DatastorePeer+20k+i.
const datastorePortStride = 20

// localDatastore is one of the admin cluster's datastores: DatastoreMembers
// etcd members run as static pods the same way, each datastore with its
// own CAs, data, ports and Secrets. The first is "default"; the others
// ("datastore-2", ...) exist to move tenants between datastores.
type localDatastore struct {
	c Config
	k int
}

// datastores are the datastores this configuration runs.
func (c Config) datastores() []localDatastore {
	out := make([]localDatastore, max(c.Datastores, 1))
	for k := range out {
		out[k] = localDatastore{c: c, k: k}
	}
	return out
}

// DatastoreNames are the names of the datastores this configuration runs,
// as their Datastore resources are named.
func (c Config) DatastoreNames() []string {
	var names []string
	for _, d := range c.datastores() {
		names = append(names, d.name())
	}
	return names
}

func (d localDatastore) name() string {
	if d.k == 0 {
		return "default"
	}
	return fmt.Sprintf("datastore-%d", d.k+1)
}

// member is the name of member i (its static pod and certificates).
func (d localDatastore) member(i int) string {
	if d.k == 0 {
		return fmt.Sprintf("datastore-%d", i)
	}
	return fmt.Sprintf("datastore%d-%d", d.k+1, i)
}

func (d localDatastore) clientPort(i int) int {
	return d.c.Ports.DatastoreClient + datastorePortStride*d.k + i
}

func (d localDatastore) peerPort(i int) int {
	return d.c.Ports.DatastorePeer + datastorePortStride*d.k + i
}

// pkiDir holds the datastore's CAs and certificates. The further
// datastores' lie outside the PKI tree whose hash restarts every static
// pod, so adding a datastore leaves the running ones alone.
func (d localDatastore) pkiDir() string {
	if d.k == 0 {
		return d.c.paths().DatastorePKI()
	}
	return d.c.paths().join("datastores", d.name(), "pki")
}

func (d localDatastore) dataDir(i int) string {
	if d.k == 0 {
		return d.c.paths().DatastoreData(i)
	}
	return d.c.paths().join("datastores", d.name(), "data", d.member(i))
}

// rootSecret and caSecret are the Secrets admin up stores for the
// operator (kubinception install reads them to create the Datastores).
func (d localDatastore) rootSecret() string {
	if d.k == 0 {
		return DatastoreRootSecret
	}
	return d.name() + "-root"
}

func (d localDatastore) caSecret() string {
	if d.k == 0 {
		return DatastoreCASecret
	}
	return d.name() + "-ca"
}

// passwordFile holds the root user's password, kept out of the PKI
// directory, whose hash restarts the static pods.
func (d localDatastore) passwordFile() string {
	if d.k == 0 {
		return "datastore-root-password"
	}
	return d.name() + "-root-password"
}

func (d localDatastore) endpoints() []string {
	var eps []string
	for i := 0; i < DatastoreMembers; i++ {
		eps = append(eps, "https://"+net.JoinHostPort(d.c.NodeIP.String(), strconv.Itoa(d.clientPort(i))))
	}
	return eps
}

func (d localDatastore) initialCluster() string {
	var parts []string
	for i := 0; i < DatastoreMembers; i++ {
		parts = append(parts, d.member(i)+"=https://"+net.JoinHostPort(d.c.NodeIP.String(), strconv.Itoa(d.peerPort(i))))
	}
	return strings.Join(parts, ",")
}

func (d localDatastore) clusterToken() string {
	if d.k == 0 {
		return "kubinception-datastore"
	}
	return "kubinception-" + d.name()
}

// DatastoreLabel names, on the Secrets admin up stores, the datastore they
// belong to; the root Secret of datastore NAME is the one whose name ends
// in -root.
const DatastoreLabel = "kubinception.dev/datastore"

// allPorts are every port the admin cluster uses, every datastore's
// included.
func (c Config) allPorts() map[int]string {
	m := c.Ports.All()
	for _, ds := range c.datastores()[1:] {
		for i := 0; i < DatastoreMembers; i++ {
			m[ds.clientPort(i)] = ds.member(i) + " (client)"
			m[ds.peerPort(i)] = ds.member(i) + " (peer)"
		}
	}
	return m
}
