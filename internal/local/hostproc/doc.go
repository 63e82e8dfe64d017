// Package hostproc finds and stops processes and cgroups on this machine:
// what teardown needs when a supervisor is gone and only the kernel's view
// of processes is left.
package hostproc
