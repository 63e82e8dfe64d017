#!/bin/bash
# End-to-end proof: throwaway apiserver+etcd, Calico CRDs, felix in netns felixtest-node,
# two hand-made Calico-style workloads + one made by the Calico CNI plugin, NetworkPolicy checks.
# Run ./cleanup.sh afterwards.
cd /tmp/felix
pass=0; fail=0
check() { # check DESC FROMPOD ADDR WANT
  out=$(ip netns exec felixtest-$2 ./bin/probe dial $3 1s)
  case "$out" in $4*) echo "PASS  $1: $out"; pass=$((pass+1));; *) echo "FAIL  $1: $out"; fail=$((fail+1));; esac
}
./cp-up.sh || exit 1
./k.sh apply --server-side -f crd/ >/dev/null
./k.sh apply -f rbac-calico-node.yaml -f rbac-cni-extra.yaml -f objects.yaml -f ippool.yaml >/dev/null
for p in a:10.244.0.10 b:10.244.0.11; do n=${p%%:*}; ip=${p#*:}
  ./k.sh -n demo patch pod pod-$n --subresource=status --type=merge -p "{\"status\":{\"phase\":\"Running\",\"podIP\":\"$ip\",\"podIPs\":[{\"ip\":\"$ip\"}]}}" >/dev/null; done
./kubeconfigs.sh
# kube-proxy waits for the Node to have an address (no kubelet here)
./k.sh patch node felixtest-node --subresource=status --type=merge -p '{"status":{"addresses":[{"type":"InternalIP","address":"10.99.0.1"}]}}' >/dev/null
./k.sh apply -f service.yaml >/dev/null
./kube-proxy-up.sh
./workloads-up.sh
for p in a b; do ip netns exec felixtest-pod-$p env PROBE_NAME=pod-$p nohup ./bin/probe listen 0.0.0.0:8080 > run/probe-$p.log 2>&1 & echo $! > run/probe-$p.pid; done
ip netns exec felixtest-pod-b env PROBE_NAME=pod-b-9090 nohup ./bin/probe listen 0.0.0.0:9090 > run/probe-b9090.log 2>&1 & echo $! > run/probe-b9090.pid
sleep 0.5
check "no felix, no policy: a->b" pod-a 10.244.0.11:8080 OK
check "no felix, no policy: a->Service svc-b" pod-a 10.96.0.80:80 OK
./felix-up.sh
for i in $(seq 1 100); do ip netns exec felixtest-node curl -sf http://127.0.0.1:9099/readiness >/dev/null && break; sleep 0.1; done
echo "felix ready after ~$((i*100)) ms"
check "felix, no policy: a->b" pod-a 10.244.0.11:8080 OK
./k.sh apply -f policies.yaml >/dev/null; sleep 1
check "default-deny: a->b" pod-a 10.244.0.11:8080 BLOCKED
check "default-deny: b->a" pod-b 10.244.0.10:8080 BLOCKED
./k.sh apply -f allow.yaml >/dev/null; sleep 1
check "allow a->b:8080: a->b:8080" pod-a 10.244.0.11:8080 OK
check "allow a->b:8080: a->b:9090" pod-a 10.244.0.11:9090 BLOCKED
check "allow a->b:8080: b->a:8080" pod-b 10.244.0.10:8080 BLOCKED
check "allow a->b:8080: a->Service svc-b 10.96.0.80:80 (kube-proxy DNAT to b:8080)" pod-a 10.96.0.80:80 OK
check "allow a->b:8080: b->Service svc-b (b has no egress allow)" pod-b 10.96.0.80:80 BLOCKED
# A third pod wired by the real Calico CNI plugin (host-local IPAM from the node's podCIDR)
./k.sh apply -f pod-c.yaml >/dev/null; ip netns add felixtest-pod-c
./cni-add.sh ADD pod-c 0123456789abcdef0123 2>/dev/null | grep -E '"name"|"address"'
ip netns exec felixtest-pod-c env PROBE_NAME=pod-c nohup ./bin/probe listen 0.0.0.0:8080 > run/probe-c.log 2>&1 & echo $! > run/probe-c.pid
sleep 1.5
check "CNI pod-c under default-deny: c->b" pod-c 10.244.0.11:8080 BLOCKED
./k.sh apply -f allow-c.yaml >/dev/null; sleep 1
check "allow c->b: c->b" pod-c 10.244.0.11:8080 OK
check "allow c->b: a->c" pod-a 10.244.0.2:8080 BLOCKED
./k.sh delete -f policies.yaml -f allow.yaml -f allow-c.yaml >/dev/null; sleep 1
check "policies deleted: b->a" pod-b 10.244.0.10:8080 OK
kill $(cat run/probe-c.pid); rm run/probe-c.pid
./cni-add.sh DEL pod-c 0123456789abcdef0123 >/dev/null 2>&1 && echo "CNI DEL ok; cali ifaces left: $(ip -n felixtest-node -o link | grep -c cali)"
echo "RESULT: $pass passed, $fail failed"
