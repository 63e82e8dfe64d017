// Package tunnel carries a tenant API server's connections into the
// tenant's network over connections its nodes open: the node tunnel.
//
// Customers' nodes usually sit behind NAT: they reach their API server,
// the API server cannot reach them. Yet kubectl logs, exec and
// port-forward, admission and conversion webhooks, aggregated APIs and
// the node, pod and Service proxies all need the API server to open
// connections to the tenant's nodes, pods and Services.
//
// An agent on every node (a DaemonSet the operator keeps in the tenant)
// opens a mutually authenticated TLS connection to the tunnel server
// beside the API server, asks to switch protocols with an HTTP/1.1
// Upgrade, and then serves HTTP/2 on that connection, the server being
// the HTTP/2 client. The API server sends its "cluster" egress to the
// server with its egress selector (HTTP CONNECT over a Unix socket); the
// server picks the agent of the node the address belongs to (any agent
// for a pod or Service address), sends it an HTTP/2 CONNECT for the
// address, and joins the two streams. The agent dials the address from
// the node.
//
// Every agent connects to every server replica: a server tells each agent
// its identity and the number of replicas, and the agent keeps dialling
// the server's Service until it holds a connection to as many distinct
// servers (and looks for new ones periodically, so a replica replaced
// during a rollout gets its agents back). Any replica can therefore reach
// any node.
//
// HTTP/1.1 Upgrade, HTTP/2 and CONNECT are the standard library's and
// golang.org/x/net/http2's: nothing of the wire format is ours.
package tunnel
