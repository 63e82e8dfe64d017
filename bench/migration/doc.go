// Package migration holds the live-migration benchmark
// (migration_test.go): one tenant of 1k and 10k objects moved between two
// real etcds, each behind its gateway (two replicas on the source), while
// a client writes through the source's gateways throughout. It reports the
// write pause (goal ≤ 2 s), the client's slowest write, the total time,
// and the writes that raised the destination's revision above the
// source's, and writes bench/results/migration.md:
//
//	KUBINCEPTION_BENCH=1 go test -v -timeout 30m ./bench/migration
package migration
