package pki

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Dir keeps key pairs as NAME.crt and NAME.key files in one directory.
type Dir struct {
	Path string
	Now  func() time.Time
}

func (d Dir) now() time.Time {
	if d.Now != nil {
		return d.Now()
	}
	return time.Now()
}

// Load reads key pair name, returning fs.ErrNotExist if either file is missing.
func (d Dir) Load(name string) (*KeyPair, error) {
	certPEM, err := os.ReadFile(filepath.Join(d.Path, name+".crt"))
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(filepath.Join(d.Path, name+".key"))
	if err != nil {
		return nil, err
	}
	kp, err := ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(d.Path, name+".crt"), err)
	}
	return kp, nil
}

// Save writes key pair name, the key readable by its owner only. Each file
// is written under a temporary name and renamed, so a crash leaves either
// the old or the new file, never half of one.
func (d Dir) Save(name string, kp *KeyPair) error {
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}
	if err := WriteFileAtomic(filepath.Join(d.Path, name+".key"), kp.KeyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(filepath.Join(d.Path, name+".crt"), kp.CertPEM, 0o644)
}

// CA loads CA name or creates it when absent.
func (d Dir) CA(name, commonName string) (*KeyPair, error) {
	kp, err := d.Load(name)
	if err == nil {
		return kp, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	kp, err = NewCA(commonName, d.now())
	if err != nil {
		return nil, err
	}
	return kp, d.Save(name, kp)
}

// Leaf loads certificate name and reissues it from ca when it is missing,
// no longer matches spec, or is close to expiry.
func (d Dir) Leaf(name string, ca *KeyPair, spec Spec) (*KeyPair, error) {
	kp, err := d.Load(name)
	if err == nil {
		if reason, _ := ca.Reissue(kp, spec, d.now()); reason == "" {
			return kp, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	kp, err = ca.Issue(spec, d.now())
	if err != nil {
		return nil, err
	}
	return kp, d.Save(name, kp)
}

// SigningKey loads the service-account signing key pair NAME.key/NAME.pub,
// creating it when absent.
func (d Dir) SigningKey(name string) error {
	keyPath, pubPath := filepath.Join(d.Path, name+".key"), filepath.Join(d.Path, name+".pub")
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	keyPEM, pubPEM, err := NewSigningKey()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.Path, 0o700); err != nil {
		return err
	}
	if err := WriteFileAtomic(keyPath, keyPEM, 0o600); err != nil {
		return err
	}
	return WriteFileAtomic(pubPath, pubPEM, 0o644)
}

// WriteFileAtomic writes data to path through a temporary file in the same
// directory and a rename.
func WriteFileAtomic(path string, data []byte, perm fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
