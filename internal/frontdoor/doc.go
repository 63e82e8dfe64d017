// Package frontdoor is the one TLS endpoint every tenant's API server is
// reached through: it reads the server name a client asks for in its TLS
// ClientHello (crypto/tls parses it; nothing of the record format is
// ours), looks the name up in the routes the operator publishes, and
// joins the client's connection to that tenant's API server (or tunnel
// server) without terminating TLS. A name that no route carries is
// refused.
//
// The front door never dials anything but a route's backend, and routes
// come only from ConfigMaps in its own namespace that the operator writes
// and the front door may only read. It tells the operator which tenants
// are used by renewing a Lease per tenant (the only thing it may write):
// a hibernated tenant is woken by a renewal newer than its hibernation,
// while the front door holds the client's connection until the API server
// answers.
package frontdoor
