// Package testenv starts the real components tests run against: etcd and
// kube-apiserver processes from the component build (kubinception build
// components), never fakes. When the binaries are not built a test skips
// and says how to build them, unless KUBINCEPTION_REQUIRE_BINARIES=1 (set by
// hack/test), where a missing binary fails the test instead: the suite must
// not pass by skipping.
//
// An admin cluster for reconciler and CRD tests is controller-runtime's
// envtest with these binaries and the CRDs `kubinception install` applies:
// SharedAPIServer gives each test package one (its TestMain is Main),
// StartAPIServer a test one of its own. Every process started here dies
// with the test binary, even a killed one.
package testenv
