package controlplane

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"
)

// A tenant's Secrets are encrypted at rest by its own kube-apiserver with
// the secretbox provider (XSalsa20 and Poly1305, a 32-byte key): upstream's
// recommended local provider, authenticated, with a random nonce per value
// so one key can write any number of values, and no key-management
// service to run. The configuration, keys included, is the one file of
// the Secret EncryptionSecretName, which only the API server container
// mounts.
const (
	// EncryptionProvider is the kube-apiserver provider that encrypts
	// Secrets; stored values begin with EncryptionValuePrefix.
	EncryptionProvider = "secretbox"
	// EncryptionValuePrefix begins every value written with a key,
	// followed by the key's name and ":".
	EncryptionValuePrefix = "k8s:enc:secretbox:v1:"
	// FileEncryptionConfig is the EncryptionConfiguration in the Secret.
	FileEncryptionConfig = "encryption-config.yaml"
	// EncryptionMountPath is where the API server sees the Secret.
	EncryptionMountPath = "/etc/kubernetes/encryption"
	// AnnotationEncryptionHash changes when the encryption configuration
	// changes, which rolls the Deployment.
	AnnotationEncryptionHash = "kubinception.dev/encryption-hash"
	// encryptionKeyBytes is secretbox's key size.
	encryptionKeyBytes = 32
)

// EncryptedResources are the resources the tenant's API server encrypts.
var EncryptedResources = []string{"secrets"}

// EncryptionSecretName is the Secret holding a tenant's encryption
// configuration and keys.
func EncryptionSecretName(name string) string { return name + "-encryption" }

// EncryptionKey is one secretbox key.
type EncryptionKey struct {
	// Name appears in every value written with the key.
	Name   string
	Secret []byte
}

// EncryptionKeys are the keys of an encryption configuration. Write, when
// set, encrypts every new value; nil writes plaintext (the identity
// provider first), which is how a tenant that ran without encryption
// starts: its API servers learn to read the first key before any writes
// with it. Read are further keys values written earlier are read with.
// Plaintext always stays readable (identity is always a provider).
type EncryptionKeys struct {
	Write *EncryptionKey
	Read  []EncryptionKey
}

// Names lists the keys' names, the write key first; "identity" stands
// for plaintext writes.
func (k EncryptionKeys) Names() []string {
	names := []string{"identity"}
	if k.Write != nil {
		names = []string{k.Write.Name}
	}
	for _, r := range k.Read {
		names = append(names, r.Name)
	}
	return names
}

// Find returns the key of a name, nil when there is none.
func (k EncryptionKeys) Find(name string) *EncryptionKey {
	if k.Write != nil && k.Write.Name == name {
		return k.Write
	}
	for i := range k.Read {
		if k.Read[i].Name == name {
			return &k.Read[i]
		}
	}
	return nil
}

// The subset of apiserver.config.k8s.io/v1 EncryptionConfiguration the
// operator writes and reads back.
type encryptionConfiguration struct {
	APIVersion string                  `json:"apiVersion"`
	Kind       string                  `json:"kind"`
	Resources  []resourceConfiguration `json:"resources"`
}

type resourceConfiguration struct {
	Resources []string         `json:"resources"`
	Providers []providerConfig `json:"providers"`
}

type providerConfig struct {
	Secretbox *secretboxConfig `json:"secretbox,omitempty"`
	Identity  *struct{}        `json:"identity,omitempty"`
}

type secretboxConfig struct {
	Keys []keyConfig `json:"keys"`
}

type keyConfig struct {
	Name   string `json:"name"`
	Secret string `json:"secret"`
}

// RenderEncryptionConfig renders the EncryptionConfiguration of keys:
// secretbox with the write key first, then identity; or identity first
// when there is no write key.
func RenderEncryptionConfig(keys EncryptionKeys) ([]byte, error) {
	var box *secretboxConfig
	all := keys.Read
	if keys.Write != nil {
		all = append([]EncryptionKey{*keys.Write}, keys.Read...)
	}
	seen := map[string]bool{}
	for _, k := range all {
		if len(k.Secret) != encryptionKeyBytes {
			return nil, fmt.Errorf("encryption key %q has %d bytes, want %d", k.Name, len(k.Secret), encryptionKeyBytes)
		}
		if k.Name == "" || strings.Contains(k.Name, ":") || seen[k.Name] {
			return nil, fmt.Errorf("encryption key name %q is empty, holds ':' or repeats", k.Name)
		}
		seen[k.Name] = true
		if box == nil {
			box = &secretboxConfig{}
		}
		box.Keys = append(box.Keys, keyConfig{Name: k.Name, Secret: base64.StdEncoding.EncodeToString(k.Secret)})
	}
	identity := providerConfig{Identity: &struct{}{}}
	var providers []providerConfig
	switch {
	case box == nil:
		providers = []providerConfig{identity}
	case keys.Write == nil:
		providers = []providerConfig{identity, {Secretbox: box}}
	default:
		providers = []providerConfig{{Secretbox: box}, identity}
	}
	return yaml.Marshal(encryptionConfiguration{
		APIVersion: "apiserver.config.k8s.io/v1",
		Kind:       "EncryptionConfiguration",
		Resources:  []resourceConfiguration{{Resources: EncryptedResources, Providers: providers}},
	})
}

// ParseEncryptionConfig reads back the keys of a configuration
// RenderEncryptionConfig wrote.
func ParseEncryptionConfig(data []byte) (EncryptionKeys, error) {
	var c encryptionConfiguration
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return EncryptionKeys{}, fmt.Errorf("encryption configuration: %w", err)
	}
	if c.Kind != "EncryptionConfiguration" || len(c.Resources) != 1 {
		return EncryptionKeys{}, errors.New("encryption configuration: want one EncryptionConfiguration with one resources entry")
	}
	var keys EncryptionKeys
	identityFirst := false
	for i, p := range c.Resources[0].Providers {
		switch {
		case p.Identity != nil:
			identityFirst = identityFirst || i == 0
		case p.Secretbox != nil:
			for j, kc := range p.Secretbox.Keys {
				secret, err := base64.StdEncoding.DecodeString(kc.Secret)
				if err != nil || len(secret) != encryptionKeyBytes {
					return EncryptionKeys{}, fmt.Errorf("encryption configuration: key %q is not %d base64-encoded bytes", kc.Name, encryptionKeyBytes)
				}
				k := EncryptionKey{Name: kc.Name, Secret: secret}
				if i == 0 && j == 0 {
					keys.Write = &k
				} else {
					keys.Read = append(keys.Read, k)
				}
			}
		default:
			return EncryptionKeys{}, fmt.Errorf("encryption configuration: provider %d is neither secretbox nor identity", i)
		}
	}
	return keys, nil
}

// NewEncryptionKey makes a random key of a name.
func NewEncryptionKey(name string) (EncryptionKey, error) {
	b := make([]byte, encryptionKeyBytes)
	if _, err := rand.Read(b); err != nil {
		return EncryptionKey{}, err
	}
	return EncryptionKey{Name: name, Secret: b}, nil
}

// NextEncryptionKeyName follows the names "key1", "key2", ...: the next
// after the highest of names.
func NextEncryptionKeyName(names ...string) string {
	highest := 0
	for _, n := range names {
		if i, err := strconv.Atoi(strings.TrimPrefix(n, "key")); err == nil && strings.HasPrefix(n, "key") && i > highest {
			highest = i
		}
	}
	return "key" + strconv.Itoa(highest+1)
}

func encryptionConfigPath() string { return EncryptionMountPath + "/" + FileEncryptionConfig }
