// Package backup holds the per-tenant backup benchmark (backup_test.go):
// backup and restore of one tenant of 1k, 10k and 50k objects through the
// etcd gateway's admin API, each beside a floor measured in the same run
// (reading the same keys page by page, writing them in transactions of the
// same size), with the archive's size. It runs a real etcd and gateway and
// writes bench/results/backup.md:
//
//	KUBINCEPTION_BENCH=1 go test -v -timeout 30m ./bench/backup
package backup
