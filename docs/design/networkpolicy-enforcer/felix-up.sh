#!/bin/bash
# Start calico-felix inside netns felixtest-node (it only programs that namespace's iptables).
cd /tmp/felix
set -a; . ./felix.env; set +a
date +%s.%N > run/felix.start
ip netns exec felixtest-node nohup ./bin/calico-felix -c /dev/null > run/felix.log 2>&1 &
echo $! > run/felix.pid
echo "felix pid $(cat run/felix.pid)"
