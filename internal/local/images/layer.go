package images

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// Entry is one file, directory or symlink in a layer.
type Entry struct {
	// Path inside the image, absolute.
	Path string
	// Source is the file on this machine whose contents Path gets; empty
	// for a directory or symlink.
	Source string
	// Data is the file's contents when there is no Source.
	Data []byte
	// Link makes Path a symlink to Link.
	Link string
	// Mode is the permission bits; 0755 when zero.
	Mode int64
}

// WriteLayer writes entries as a reproducible tar (sorted, zero times, root
// owner) to dest, adding parent directories, and returns it as an
// uncompressed layer.
func WriteLayer(dest string, entries []Entry) (v1.Layer, error) {
	byPath := map[string]Entry{}
	for _, e := range entries {
		p := strings.TrimPrefix(path.Clean(e.Path), "/")
		for dir := path.Dir(p); dir != "." && dir != "/"; dir = path.Dir(dir) {
			if _, ok := byPath[dir]; !ok {
				byPath[dir] = Entry{Path: dir}
			}
		}
		e.Path = p
		byPath[p] = e
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)

	f, err := os.Create(dest)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, p := range paths {
		e := byPath[p]
		mode := e.Mode
		if mode == 0 {
			mode = 0o755
		}
		hdr := &tar.Header{Name: p, Mode: mode, Format: tar.FormatPAX}
		switch {
		case e.Link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, e.Link, 0o777
		case e.Source != "":
			info, err := os.Stat(e.Source)
			if err != nil {
				return nil, fmt.Errorf("layer file %s: %w", e.Source, err)
			}
			hdr.Typeflag, hdr.Size = tar.TypeReg, info.Size()
		case e.Data != nil:
			hdr.Typeflag, hdr.Size = tar.TypeReg, int64(len(e.Data))
		default:
			hdr.Typeflag, hdr.Name = tar.TypeDir, p+"/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if e.Data != nil && e.Source == "" {
			if _, err := tw.Write(e.Data); err != nil {
				return nil, err
			}
		} else if hdr.Typeflag == tar.TypeReg {
			src, err := os.Open(e.Source)
			if err != nil {
				return nil, err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return nil, fmt.Errorf("copy %s into layer: %w", e.Source, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	return fileLayer(dest)
}

// fileLayer is an uncompressed layer backed by a tar file, so a layer
// holding a several-hundred-megabyte binary is never held in memory.
type fileLayerT struct {
	path   string
	digest v1.Hash
	size   int64
}

func fileLayer(p string) (v1.Layer, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return nil, err
	}
	return &fileLayerT{path: p, size: n, digest: v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}}, nil
}

func (l *fileLayerT) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayerT) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *fileLayerT) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayerT) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }
func (l *fileLayerT) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayerT) MediaType() (types.MediaType, error)  { return types.OCIUncompressedLayer, nil }
