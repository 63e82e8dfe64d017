#!/bin/bash
# Throwaway etcd + kube-apiserver on the loopback of network namespace felixtest-node.
set -e
NS=felixtest-node
R=/tmp/felix/run
KB=~/.cache/kubinception/kubernetes-v1.35.4/bin/kube
ETCD=~/.cache/kubinception/etcd-v3.6.16/bin/etcd
mkdir -p $R/pki $R/etcd
ip netns list | grep -qw $NS || ip netns add $NS
ip -n $NS link set lo up
ip -n $NS addr show dev lo | grep -q 10.99.0.1 || ip -n $NS addr add 10.99.0.1/32 dev lo   # the "node IP"
[ -f $R/pki/sa.key ] || { openssl genrsa -out $R/pki/sa.key 2048 2>/dev/null; openssl rsa -in $R/pki/sa.key -pubout -out $R/pki/sa.pub 2>/dev/null; }
echo 'felixtoken,felix-admin,felix-admin-uid,"system:masters"' > $R/pki/tokens.csv
cat > $R/kubeconfig <<EOK
apiVersion: v1
kind: Config
clusters: [{name: t, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: felixtoken}}]
contexts: [{name: t, context: {cluster: t, user: u}}]
current-context: t
EOK
ip netns exec $NS nohup $ETCD --data-dir $R/etcd/data --listen-client-urls http://127.0.0.1:2379 \
  --advertise-client-urls http://127.0.0.1:2379 --listen-peer-urls http://127.0.0.1:2380 \
  --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380 \
  > $R/etcd.log 2>&1 &
echo $! > $R/etcd.pid
ip netns exec $NS nohup env GOGC=50 $KB kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=127.0.0.1 --advertise-address=10.99.0.1 --secure-port=6443 --cert-dir=$R/pki \
  --token-auth-file=$R/pki/tokens.csv --authorization-mode=Node,RBAC \
  --service-account-issuer=https://kubernetes.default.svc --service-account-key-file=$R/pki/sa.pub \
  --service-account-signing-key-file=$R/pki/sa.key --service-cluster-ip-range=10.96.0.0/16 \
  --watch-cache=false > $R/apiserver.log 2>&1 &
echo $! > $R/apiserver.pid
for i in $(seq 1 60); do
  if ip netns exec $NS kubectl --kubeconfig $R/kubeconfig get --raw /readyz >/dev/null 2>&1; then echo "apiserver ready after ${i}x0.5s"; exit 0; fi
  sleep 0.5
done
echo "apiserver not ready"; tail -20 $R/apiserver.log; exit 1
