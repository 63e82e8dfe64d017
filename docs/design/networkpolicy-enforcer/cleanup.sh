#!/bin/bash
# Stop everything this study started (by PID) and delete its network namespaces (veths go with them).
cd /tmp/felix
for f in run/probe-*.pid run/kube-proxy.pid run/felix.pid run/apiserver.pid run/etcd.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f"); kill "$p" 2>/dev/null && echo "killed $f ($p)"; rm -f "$f"
  for i in $(seq 1 30); do kill -0 "$p" 2>/dev/null || break; sleep 0.5; done
  kill -0 "$p" 2>/dev/null && { kill -9 "$p"; echo "force-killed $p"; }
done
for ns in $(ip netns list | awk '{print $1}' | grep '^felixtest-'); do ip netns del "$ns" && echo "deleted netns $ns"; done
# felix hard-codes /var/lib/calico/mtu (created by this study; not configurable in v3.28)
rm -rf /var/lib/calico
rm -rf run/etcd cni/state
true
