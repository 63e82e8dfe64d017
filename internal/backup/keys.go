package backup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"filippo.io/age"
)

// A tenant's Secrets are stored encrypted by its API servers, so its
// archive alone restores only into the tenant whose encryption keys still
// read them. For a clone the keys travel with the backup: the tenant's
// encryption configuration is kept beside the archive, encrypted to the
// backup key like the archive itself, so whoever can read the target
// learns nothing more than from the archive.
const encryptionSuffix = ".encryption.age"

// maxEncryptionConfig bounds what ReadEncryptionConfig accepts: a
// configuration holds a few keys.
const maxEncryptionConfig = 1 << 20

// PutEncryptionConfig stores the tenant's encryption configuration of the
// backup name, encrypted to the backup key.
func PutEncryptionConfig(ctx context.Context, t Target, name string, config []byte, to age.Recipient) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	var sealed bytes.Buffer
	w, err := age.Encrypt(&sealed, to)
	if err != nil {
		return fmt.Errorf("backup %s: encrypt the encryption configuration: %w", name, err)
	}
	if _, err := w.Write(config); err != nil {
		return fmt.Errorf("backup %s: encrypt the encryption configuration: %w", name, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("backup %s: encrypt the encryption configuration: %w", name, err)
	}
	if err := t.Put(ctx, name+encryptionSuffix, &sealed); err != nil {
		return fmt.Errorf("backup %s: store the encryption configuration: %w", name, err)
	}
	return nil
}

// ErrNoEncryptionConfig says a backup was stored without its tenant's
// encryption configuration.
var ErrNoEncryptionConfig = errors.New("the backup holds no encryption configuration")

// ReadEncryptionConfig returns the encryption configuration kept with the
// backup name, decrypted with the backup key; ErrNoEncryptionConfig when
// there is none.
func ReadEncryptionConfig(ctx context.Context, t Target, name string, id age.Identity) ([]byte, error) {
	r, err := t.Get(ctx, name+encryptionSuffix)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("backup %s: %w", name, ErrNoEncryptionConfig)
	}
	if err != nil {
		return nil, fmt.Errorf("backup %s: read the encryption configuration: %w", name, err)
	}
	defer r.Close()
	dec, err := age.Decrypt(r, id)
	if err != nil {
		return nil, fmt.Errorf("backup %s: decrypt the encryption configuration (is this the key the backup was made with?): %w", name, err)
	}
	config, err := io.ReadAll(io.LimitReader(dec, maxEncryptionConfig+1))
	if err != nil {
		return nil, fmt.Errorf("backup %s: decrypt the encryption configuration: %w", name, err)
	}
	if len(config) > maxEncryptionConfig {
		return nil, fmt.Errorf("backup %s: the encryption configuration is larger than %d bytes", name, maxEncryptionConfig)
	}
	return config, nil
}
