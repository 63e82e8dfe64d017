// Package gateway holds the etcd gateway's benchmark (gateway_test.go):
// kube-apiserver through the gateway against kube-apiserver straight on
// the datastore, the gateway's memory and CPU with 1, 10 and 50 tenants,
// and a tenant's latency beside a noisy neighbour with the gateway's
// limits on and off. It runs real etcd, kube-apiserver and gateway
// processes and writes bench/results/gateway.md:
//
//	KUBINCEPTION_BENCH=1 go test -v -timeout 60m ./bench/gateway
package gateway
