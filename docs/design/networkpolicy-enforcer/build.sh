#!/bin/bash
# Build calico-felix and the calico CNI plugin (calico + calico-ipam) statically.
set -e
cd /tmp/felix
export CGO_ENABLED=0
P=github.com/projectcalico/calico
start=$(date +%s)
nice -n 10 go build -trimpath -ldflags "-s -w" -o bin/calico-felix $P/felix/cmd/calico-felix
echo "felix built in $(( $(date +%s) - start ))s"
start=$(date +%s)
nice -n 10 go build -trimpath -ldflags "-s -w" -o bin/calico $P/cni-plugin/cmd/calico
echo "cni built in $(( $(date +%s) - start ))s"
ls -l bin
