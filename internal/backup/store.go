package backup

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"filippo.io/age"
)

// Target is where archives are kept: a directory on a volume of the
// admin cluster, or an S3-compatible bucket.
type Target interface {
	// Put stores an object; it is visible to Get and List only once
	// complete.
	Put(ctx context.Context, name string, r io.Reader) error
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// List returns the names of the objects whose name starts with
	// prefix.
	List(ctx context.Context, prefix string) ([]string, error)
	Delete(ctx context.Context, name string) error
}

const (
	dataSuffix     = ".kvs.age"
	manifestSuffix = ".json"
)

// namePattern is what a backup may be called: it becomes an object name
// and a Kubernetes object name.
var namePattern = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]{0,200}[a-z0-9])?$`)

// ValidateName checks a backup's name.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("backup name %q is not valid: use lower-case letters, digits, '-' and '.', starting and ending with a letter or digit", name)
	}
	return nil
}

// Snapshotter writes a tenant's archive to w and returns its manifest:
// Snapshot on a Source, or a gateway's backup endpoint.
type Snapshotter func(ctx context.Context, w io.Writer) (Manifest, error)

// Restorer writes an archive's keys into a tenant: Restore on a Source, or
// a gateway's restore endpoint.
type Restorer func(ctx context.Context, r io.Reader, m Manifest) (Result, error)

// Snapshotter reads the Source directly, encrypting to the backup key.
func (src Source) Snapshotter(to age.Recipient) Snapshotter {
	return func(ctx context.Context, w io.Writer) (Manifest, error) { return Snapshot(ctx, src, w, to) }
}

// Restorer restores into the Source directly, decrypting with id.
func (src Source) Restorer(id age.Identity, mode RestoreMode) Restorer {
	return func(ctx context.Context, r io.Reader, m Manifest) (Result, error) {
		return Restore(ctx, src, r, id, m, mode)
	}
}

// Create stores a snapshot in the target under name. The manifest is
// written last, so a backup interrupted half-way is never listed; running
// Create again with the same name replaces what it left.
func Create(ctx context.Context, t Target, name string, snapshot Snapshotter) (Manifest, error) {
	if err := ValidateName(name); err != nil {
		return Manifest{}, err
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := t.Put(ctx, name+dataSuffix, pr)
		// Unblock the snapshot if the target gave up reading.
		pr.CloseWithError(err)
		done <- err
	}()
	m, err := snapshot(ctx, pw)
	pw.CloseWithError(err)
	if putErr := <-done; err == nil && putErr != nil {
		err = fmt.Errorf("store the archive: %w", putErr)
	}
	if err != nil {
		return Manifest{}, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return Manifest{}, err
	}
	if err := t.Put(ctx, name+manifestSuffix, bytes.NewReader(b)); err != nil {
		return Manifest{}, fmt.Errorf("store the manifest: %w", err)
	}
	return m, nil
}

// Listed is one complete backup in a target.
type Listed struct {
	Name string
	Manifest
}

// List returns the complete backups in the target whose name starts with
// prefix, oldest first.
func List(ctx context.Context, t Target, prefix string) ([]Listed, error) {
	names, err := t.List(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var out []Listed
	for _, n := range names {
		if !strings.HasSuffix(n, manifestSuffix) {
			continue
		}
		name := strings.TrimSuffix(n, manifestSuffix)
		m, err := ReadManifest(ctx, t, name)
		if err != nil {
			return nil, err
		}
		out = append(out, Listed{Name: name, Manifest: m})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Started.Before(out[j].Started) })
	return out, nil
}

// ReadManifest reads one backup's manifest.
func ReadManifest(ctx context.Context, t Target, name string) (Manifest, error) {
	r, err := t.Get(ctx, name+manifestSuffix)
	if err != nil {
		return Manifest{}, err
	}
	defer r.Close()
	var m Manifest
	if err := json.NewDecoder(io.LimitReader(r, 16<<20)).Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("backup %s: read its manifest: %w", name, err)
	}
	return m, m.Validate()
}

// RestoreFrom restores the named backup from the target.
func RestoreFrom(ctx context.Context, t Target, name string, restore Restorer) (Result, error) {
	m, err := ReadManifest(ctx, t, name)
	if err != nil {
		return Result{}, err
	}
	r, err := t.Get(ctx, name+dataSuffix)
	if err != nil {
		return Result{}, err
	}
	defer r.Close()
	return restore(ctx, r, m)
}

// Remove deletes a backup: the manifest first, so a half-removed backup
// is no longer listed.
func Remove(ctx context.Context, t Target, name string) error {
	if err := t.Delete(ctx, name+manifestSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	for _, suffix := range []string{dataSuffix, encryptionSuffix} {
		if err := t.Delete(ctx, name+suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// Dir is a Target in a local directory (a volume mounted into the pod that
// runs backups).
type Dir struct{ Path string }

// Put writes the object to a temporary file and renames it into place.
func (d Dir) Put(ctx context.Context, name string, r io.Reader) error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(d.Path, ".partial-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := io.Copy(f, contextReader{ctx, r}); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(d.Path, name))
}

// Get opens an object.
func (d Dir) Get(_ context.Context, name string) (io.ReadCloser, error) {
	f, err := os.Open(filepath.Join(d.Path, name))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("backup object %s not found in %s: %w", name, d.Path, err)
	}
	return f, err
}

// List lists objects by name prefix, skipping partial writes.
func (d Dir) List(_ context.Context, prefix string) ([]string, error) {
	entries, err := os.ReadDir(d.Path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && strings.HasPrefix(e.Name(), prefix) && !strings.HasPrefix(e.Name(), ".partial-") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// Delete removes an object.
func (d Dir) Delete(_ context.Context, name string) error {
	return os.Remove(filepath.Join(d.Path, name))
}

// contextReader stops a copy when its context ends.
type contextReader struct {
	ctx context.Context
	r   io.Reader
}

func (c contextReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
