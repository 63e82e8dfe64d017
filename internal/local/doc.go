// Package local holds, in its subpackages, the tooling that runs a real
// admin cluster on this machine: component builds, images, the admin node,
// its supervisor and local workers. It may import the operator's packages;
// no operator package imports it.
package local
