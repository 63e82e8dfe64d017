// Package supervisor keeps a few host daemons (containerd, the kubelet)
// running where there is no systemd: it starts them in order, waits for each
// to be ready before starting the next, restarts one that exits with a
// backoff, reloads its list on SIGHUP and stops everything in reverse order
// on SIGTERM. It runs detached as `kubinception admin supervise`.
package supervisor
