package images

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"kubinception.dev/kubinception/internal/release"
)

func TestWriteLayerIsReproducible(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "bin")
	if err := os.WriteFile(src, []byte("#!binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	entries := []Entry{
		{Path: "/usr/local/bin/tool", Source: src},
		{Path: "/usr/local/bin/alias", Link: "tool"},
		{Path: "/etc/motd", Data: []byte("hi\n"), Mode: 0o644},
	}
	a, err := WriteLayer(filepath.Join(dir, "a.tar"), entries)
	if err != nil {
		t.Fatal(err)
	}
	// Touch the source: contents, not times, decide the digest.
	if err := os.Chtimes(src, timeZero, timeZero); err != nil {
		t.Fatal(err)
	}
	b, err := WriteLayer(filepath.Join(dir, "b.tar"), entries)
	if err != nil {
		t.Fatal(err)
	}
	da, _ := a.Digest()
	db, _ := b.Digest()
	if da != db {
		t.Fatalf("the same entries gave two digests: %s and %s", da, db)
	}
	rc, _ := a.Uncompressed()
	defer rc.Close()
	names := map[string]byte{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = h.Typeflag
		if !h.ModTime.IsZero() && h.ModTime.Unix() != 0 {
			t.Errorf("%s has a modification time; layers must not depend on when they were built", h.Name)
		}
	}
	for name, typ := range map[string]byte{"usr/": tar.TypeDir, "usr/local/bin/": tar.TypeDir, "usr/local/bin/tool": tar.TypeReg, "usr/local/bin/alias": tar.TypeSymlink, "etc/motd": tar.TypeReg} {
		if names[name] != typ {
			t.Errorf("layer entry %s: type %q, want %q (have %v)", name, names[name], typ, names)
		}
	}
}

var timeZero = time.Unix(0, 0)

func TestWriteArchiveNamesEveryImageOnce(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "bin"), []byte("x"), 0o755); err != nil {
		t.Fatal(err)
	}
	layer, err := WriteLayer(filepath.Join(dir, "l.tar"), []Entry{{Path: "/bin/x", Source: filepath.Join(dir, "bin")}})
	if err != nil {
		t.Fatal(err)
	}
	var imgs []Tagged
	for _, ref := range []string{"kubinception.local/a:v1", "kubinception.local/b:v1"} {
		img, err := Build(Spec{Ref: ref, Layers: []v1.Layer{layer}, Entrypoint: []string{"/bin/x", ref}})
		if err != nil {
			t.Fatal(err)
		}
		imgs = append(imgs, Tagged{Ref: ref, Image: img})
	}
	var buf bytes.Buffer
	if err := WriteArchive(&buf, imgs); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	seen := map[string]int{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		files[h.Name] = data
		seen[h.Name]++
	}
	for name, n := range seen {
		if n > 1 {
			t.Errorf("%s written %d times", name, n)
		}
	}
	var index v1.IndexManifest
	if err := json.Unmarshal(files["index.json"], &index); err != nil {
		t.Fatalf("index.json: %v", err)
	}
	if len(index.Manifests) != 2 {
		t.Fatalf("index lists %d images, want 2", len(index.Manifests))
	}
	for i, m := range index.Manifests {
		if m.Annotations["io.containerd.image.name"] != imgs[i].Ref {
			t.Errorf("image %d named %q, want %q", i, m.Annotations["io.containerd.image.name"], imgs[i].Ref)
		}
		if _, ok := files["blobs/sha256/"+m.Digest.Hex]; !ok {
			t.Errorf("manifest %s is not in the archive", m.Digest)
		}
	}
	ld, _ := layer.Digest()
	if _, ok := files["blobs/sha256/"+ld.Hex]; !ok {
		t.Error("the shared layer is not in the archive")
	}
}

func TestNamesValidate(t *testing.T) {
	n := release.Names{Registry: release.LocalRegistry, KubernetesVersion: "v1.35.4", EtcdVersion: "v3.6.16"}
	if err := n.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := n.Component("kube-apiserver"); got != "kubinception.local/kube-apiserver:v1.35.4" {
		t.Fatalf("Component = %s", got)
	}
	n.Registry = ""
	if err := n.Validate(); err == nil {
		t.Fatal("an empty registry was accepted")
	}
}
