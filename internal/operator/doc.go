// Package operator wires the kubinception operator: its scheme, its
// controller-runtime manager (cache filters, leader election, metrics and
// probes) and its reconcilers. `kubinception manager` turns flags into
// Options and calls Run; nothing here knows about the local admin cluster.
package operator
