package backup_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"kubinception.dev/kubinception/internal/backup"
)

// TestEncryptionConfigTravelsSealed keeps a tenant's encryption
// configuration beside a backup: stored encrypted, read back only with the
// backup key, absent for a backup made without one, and removed with the
// backup.
func TestEncryptionConfigTravelsSealed(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store := backup.Dir{Path: dir}
	id, to := newKey(t)
	config := []byte("kind: EncryptionConfiguration\n# secret: c2VjcmV0LWtleS1tYXRlcmlhbA==\n")

	if _, err := backup.ReadEncryptionConfig(ctx, store, "b-1", id); !errors.Is(err, backup.ErrNoEncryptionConfig) {
		t.Fatalf("before it is stored: got %v, want ErrNoEncryptionConfig", err)
	}
	if err := backup.PutEncryptionConfig(ctx, store, "b-1", config, to); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("c2VjcmV0LWtleS1tYXRlcmlhbA")) {
			t.Fatalf("%s holds the key in the clear", e.Name())
		}
	}
	got, err := backup.ReadEncryptionConfig(ctx, store, "b-1", id)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, config) {
		t.Fatalf("read back %q, want %q", got, config)
	}
	other, _ := newKey(t)
	if _, err := backup.ReadEncryptionConfig(ctx, store, "b-1", other); err == nil {
		t.Fatal("another key decrypted the encryption configuration")
	}
	if err := backup.PutEncryptionConfig(ctx, store, "../escape", config, to); err == nil {
		t.Fatal("a name with a path was accepted")
	}
	if err := backup.Remove(ctx, store, "b-1"); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("Remove left %v", entries)
	}
}
