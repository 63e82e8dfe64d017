package nodeca

import (
	"os"
	"path/filepath"
	"testing"
)

// A local worker's kubelet links its current certificate to an absolute
// path in its own mount namespace; seen from the host that path is the
// host's, so the link is read relative to PKIDir.
func TestResolveStaysInPKIDir(t *testing.T) {
	dir := t.TempDir()
	p := Paths{PKIDir: dir}
	abs := filepath.Join(dir, "kubelet-client-current.pem")
	if err := os.Symlink("/var/lib/kubelet/pki/kubelet-client-2026-11-22-10-00-00.pem", abs); err != nil {
		t.Fatal(err)
	}
	rel := filepath.Join(dir, "kubelet-server-current.pem")
	if err := os.Symlink("kubelet-server-2026.pem", rel); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(dir, "plain.pem")
	for path, want := range map[string]string{
		abs:   filepath.Join(dir, "kubelet-client-2026-11-22-10-00-00.pem"),
		rel:   filepath.Join(dir, "kubelet-server-2026.pem"),
		plain: plain,
	} {
		if got := p.resolve(path); got != want {
			t.Errorf("resolve(%s) = %s, want %s", path, got, want)
		}
	}
}

func TestParseCerts(t *testing.T) {
	if _, err := ParseCerts([]byte("not PEM")); err == nil {
		t.Error("a bundle without a certificate was accepted")
	}
}
