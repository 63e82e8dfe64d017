package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Spec is one image: its reference, layers and how it starts.
type Spec struct {
	Ref        string
	Layers     []v1.Layer
	Entrypoint []string
	Env        []string
}

// Build assembles spec into an OCI image for linux/amd64.
func Build(spec Spec) (v1.Image, error) {
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	for _, l := range spec.Layers {
		var err error
		img, err = mutate.Append(img, mutate.Addendum{Layer: l, MediaType: types.OCIUncompressedLayer})
		if err != nil {
			return nil, fmt.Errorf("image %s: add layer: %w", spec.Ref, err)
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Env = append([]string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}, spec.Env...)
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("image %s: config: %w", spec.Ref, err)
	}
	return img, nil
}

// Tagged pairs an image with the reference it is imported under.
type Tagged struct {
	Ref   string
	Image v1.Image
}

// WriteArchive writes images as one OCI archive (an OCI image layout in a
// tar) whose index names each image, in the form `ctr images import` reads.
// A blob shared by several images is written once.
func WriteArchive(w io.Writer, imgs []Tagged) error {
	tw := tar.NewWriter(w)
	written := map[string]bool{}
	writeBlob := func(digest v1.Hash, size int64, open func() (io.ReadCloser, error)) error {
		name := "blobs/" + digest.Algorithm + "/" + digest.Hex
		if written[name] {
			return nil
		}
		written[name] = true
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		r, err := open()
		if err != nil {
			return err
		}
		defer r.Close()
		_, err = io.Copy(tw, r)
		return err
	}
	bytesBlob := func(b []byte) func() (io.ReadCloser, error) {
		return func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}

	var index v1.IndexManifest
	index.SchemaVersion = 2
	index.MediaType = types.OCIImageIndex
	for _, t := range imgs {
		layers, err := t.Image.Layers()
		if err != nil {
			return err
		}
		for _, l := range layers {
			d, err := l.Digest()
			if err != nil {
				return err
			}
			size, err := l.Size()
			if err != nil {
				return err
			}
			if err := writeBlob(d, size, l.Compressed); err != nil {
				return fmt.Errorf("write layer of %s: %w", t.Ref, err)
			}
		}
		cfg, err := t.Image.RawConfigFile()
		if err != nil {
			return err
		}
		cfgName, err := t.Image.ConfigName()
		if err != nil {
			return err
		}
		if err := writeBlob(cfgName, int64(len(cfg)), bytesBlob(cfg)); err != nil {
			return err
		}
		manifest, err := t.Image.RawManifest()
		if err != nil {
			return err
		}
		digest, err := t.Image.Digest()
		if err != nil {
			return err
		}
		if err := writeBlob(digest, int64(len(manifest)), bytesBlob(manifest)); err != nil {
			return err
		}
		index.Manifests = append(index.Manifests, v1.Descriptor{
			MediaType: types.OCIManifestSchema1,
			Digest:    digest,
			Size:      int64(len(manifest)),
			Platform:  &v1.Platform{OS: "linux", Architecture: "amd64"},
			Annotations: map[string]string{
				"io.containerd.image.name":          t.Ref,
				"org.opencontainers.image.ref.name": tagOf(t.Ref),
			},
		})
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{
		{"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)},
		{"index.json", indexJSON},
	} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	return tw.Close()
}

func tagOf(ref string) string {
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		return ref[i+1:]
	}
	return "latest"
}

// Importer loads images into a containerd through ctr.
type Importer struct {
	// Address is containerd's socket.
	Address string
	// Namespace is the containerd namespace; the CRI plugin uses k8s.io.
	Namespace string
	// Dir holds the temporary archive.
	Dir string
}

// Import loads the images containerd does not already hold at the same
// digest, and returns the references it loaded.
func (im Importer) Import(ctx context.Context, imgs []Tagged) ([]string, error) {
	have, err := im.List(ctx)
	if err != nil {
		return nil, err
	}
	var missing []Tagged
	var refs []string
	for _, t := range imgs {
		d, err := t.Image.Digest()
		if err != nil {
			return nil, err
		}
		if have[t.Ref] != d.String() {
			missing = append(missing, t)
			refs = append(refs, t.Ref)
		}
	}
	if len(missing) == 0 {
		return nil, nil
	}
	f, err := os.CreateTemp(im.Dir, "images-*.tar")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	if err := WriteArchive(f, missing); err != nil {
		f.Close()
		return nil, fmt.Errorf("write image archive: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	out, err := im.ctr(ctx, "images", "import", "--digests", f.Name())
	if err != nil {
		return nil, fmt.Errorf("import images %s: %w: %s", strings.Join(refs, ", "), err, out)
	}
	return refs, nil
}

// List returns the images containerd holds, reference to manifest digest.
func (im Importer) List(ctx context.Context) (map[string]string, error) {
	out, err := im.ctr(ctx, "images", "ls")
	if err != nil {
		return nil, fmt.Errorf("list images: %w: %s", err, out)
	}
	have := map[string]string{}
	for i, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if i == 0 || len(fields) < 3 {
			continue
		}
		have[fields[0]] = fields[2]
	}
	return have, nil
}

func (im Importer) ctr(ctx context.Context, args ...string) (string, error) {
	ns := im.Namespace
	if ns == "" {
		ns = "k8s.io"
	}
	cmd := exec.CommandContext(ctx, "ctr", append([]string{"--address", im.Address, "--namespace", ns}, args...)...)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}
