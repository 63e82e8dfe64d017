package testenv

import (
	"os"
	"testing"

	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/release"
)

// Binaries are the built components a test needs.
type Binaries struct {
	Etcd          string
	KubeAPIServer string
}

// FindBinaries returns the built etcd and kube-apiserver of the default
// Kubernetes version, or skips (fails when they are required) naming the
// command that builds them.
func FindBinaries(tb testing.TB) Binaries {
	tb.Helper()
	b := &components.Builder{CacheDir: components.DefaultCacheDir()}
	bins, err := b.Lookup(release.DefaultKubernetesVersion)
	if err == nil {
		_, err = os.Stat(bins.Etcd)
	}
	if err != nil {
		missing(tb, err)
	}
	return Binaries{Etcd: bins.Etcd, KubeAPIServer: bins.Component("kube-apiserver")}
}

func missing(tb testing.TB, err error) {
	tb.Helper()
	missingTool(tb, "components are not built ("+err.Error()+"): run `go run ./cmd/kubinception build components`; this test runs the real binaries")
}

// missingTool skips the test saying what is missing and how to get it, or
// fails it when KUBINCEPTION_REQUIRE_BINARIES=1.
func missingTool(tb testing.TB, msg string) {
	tb.Helper()
	if os.Getenv("KUBINCEPTION_REQUIRE_BINARIES") == "1" {
		tb.Fatal(msg)
	}
	tb.Skip(msg)
}
