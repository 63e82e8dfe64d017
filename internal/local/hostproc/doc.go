// Package hostproc is this machine's kernel view of processes, cgroups,
// listening sockets and mounts: the one place that reads /proc to find
// processes, and what teardown needs when a supervisor is gone and only
// the kernel knows what still runs.
package hostproc
