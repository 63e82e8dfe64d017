#!/bin/bash
# cni-add.sh ADD|DEL POD CONTAINERID: run the Calico CNI plugin the way containerd would, inside felixtest-node
cd /tmp/felix
ip netns exec felixtest-node env CNI_COMMAND=$1 CNI_CONTAINERID=$3 CNI_NETNS=/var/run/netns/felixtest-$2 CNI_IFNAME=eth0 \
  CNI_PATH=/tmp/felix/cni/bin CNI_ARGS="IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=$2;K8S_POD_INFRA_CONTAINER_ID=$3" \
  ./cni/bin/calico < cni/calico.conf
