// Package images packs kubinception's container images without a Docker
// engine and loads them into containerd without a registry.
//
// An image is a few uncompressed, reproducible layers built from files on
// this machine (a static binary, symlinks, and for kube-proxy the host's
// iptables with its libraries) plus a config, assembled with
// go-containerregistry and written as an OCI archive that
// `ctr images import` reads. Layers are reproducible, so importing the same
// binaries twice yields the same digests and the second import is skipped.
package images
