package controlplane

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func testKey(name string, fill byte) EncryptionKey {
	return EncryptionKey{Name: name, Secret: bytes.Repeat([]byte{fill}, 32)}
}

// TestEncryptionConfig renders each shape a rotation goes through and
// reads it back: the provider order decides which key writes, and
// identity is always there so plaintext stays readable.
func TestEncryptionConfig(t *testing.T) {
	k1, k2 := testKey("key1", 1), testKey("key2", 2)
	for _, tc := range []struct {
		name      string
		keys      EncryptionKeys
		providers []string
	}{
		{"plaintext writes, the first key reads", EncryptionKeys{Read: []EncryptionKey{k1}}, []string{"identity", "secretbox:key1"}},
		{"one key", EncryptionKeys{Write: &k1}, []string{"secretbox:key1", "identity"}},
		{"old key writes, new key reads", EncryptionKeys{Write: &k1, Read: []EncryptionKey{k2}}, []string{"secretbox:key1,key2", "identity"}},
		{"new key writes, old key reads", EncryptionKeys{Write: &k2, Read: []EncryptionKey{k1}}, []string{"secretbox:key2,key1", "identity"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data, err := RenderEncryptionConfig(tc.keys)
			if err != nil {
				t.Fatal(err)
			}
			if got := providerOrder(string(data)); !slices.Equal(got, tc.providers) {
				t.Errorf("providers %v, want %v:\n%s", got, tc.providers, data)
			}
			if !strings.Contains(string(data), "- secrets\n") || !strings.Contains(string(data), "kind: EncryptionConfiguration") {
				t.Errorf("the configuration does not encrypt secrets:\n%s", data)
			}
			back, err := ParseEncryptionConfig(data)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.keys, back); diff != "" {
				t.Errorf("read back differs (-rendered +parsed):\n%s", diff)
			}
		})
	}
}

// providerOrder summarises a rendered configuration: each provider in
// order, secretbox with its key names.
func providerOrder(yaml string) []string {
	var out []string
	for _, line := range strings.Split(yaml, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(trimmed, "- identity:"):
			out = append(out, "identity")
		case strings.HasPrefix(trimmed, "- secretbox:"):
			out = append(out, "secretbox:")
		case strings.HasPrefix(trimmed, "- name: ") && len(out) > 0:
			last := &out[len(out)-1]
			if !strings.HasSuffix(*last, ":") {
				*last += ","
			}
			*last += strings.TrimPrefix(trimmed, "- name: ")
		}
	}
	return out
}

func TestEncryptionConfigRefusesBadKeys(t *testing.T) {
	k := testKey("key1", 1)
	for name, keys := range map[string]EncryptionKeys{
		"short key":     {Write: &EncryptionKey{Name: "key1", Secret: []byte("short")}},
		"colon in name": {Write: &EncryptionKey{Name: "a:b", Secret: k.Secret}},
		"repeated name": {Write: &k, Read: []EncryptionKey{k}},
	} {
		if _, err := RenderEncryptionConfig(keys); err == nil {
			t.Errorf("%s: rendered", name)
		}
	}
	if _, err := ParseEncryptionConfig([]byte("kind: EncryptionConfiguration\nresources: [{resources: [secrets], providers: [{aescbc: {}}]}]\n")); err == nil {
		t.Error("parsed a provider the operator never writes")
	}
}

func TestNextEncryptionKeyName(t *testing.T) {
	for _, tc := range []struct {
		names []string
		want  string
	}{
		{nil, "key1"}, {[]string{"key1"}, "key2"}, {[]string{"key9", "key10"}, "key11"}, {[]string{"identity", "other"}, "key1"},
	} {
		if got := NextEncryptionKeyName(tc.names...); got != tc.want {
			t.Errorf("NextEncryptionKeyName(%v) = %s, want %s", tc.names, got, tc.want)
		}
	}
	a, err := NewEncryptionKey("key1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewEncryptionKey("key1")
	if len(a.Secret) != 32 || bytes.Equal(a.Secret, b.Secret) {
		t.Error("new keys are not 32 random bytes")
	}
}

// TestEncryptionMountedOnlyByAPIServer checks that the keys reach the API
// server alone, that the API server is told where they are, and that a
// new configuration rolls the pods.
func TestEncryptionMountedOnlyByAPIServer(t *testing.T) {
	p := testParams()
	dep := Deployment(p)
	pod := dep.Spec.Template.Spec
	for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
		mounts := false
		for _, m := range c.VolumeMounts {
			if m.Name == "encryption" {
				mounts = true
				if !m.ReadOnly || m.MountPath != EncryptionMountPath {
					t.Errorf("container %s mounts the keys %+v, want read-only at %s", c.Name, m, EncryptionMountPath)
				}
			}
		}
		if mounts != (c.Name == "kube-apiserver") {
			t.Errorf("container %s mounts the encryption keys: %v", c.Name, mounts)
		}
	}
	if !slices.Contains(APIServerArgs(p), "--encryption-provider-config=/etc/kubernetes/encryption/encryption-config.yaml") {
		t.Errorf("API server args lack the encryption configuration: %v", APIServerArgs(p))
	}
	if got := dep.Spec.Template.Annotations[AnnotationEncryptionHash]; got != p.EncryptionHash {
		t.Errorf("pod template annotation %s = %q, want %q", AnnotationEncryptionHash, got, p.EncryptionHash)
	}
	p.EncryptionHash = "other"
	if Deployment(p).Spec.Template.Annotations[AnnotationEncryptionHash] == dep.Spec.Template.Annotations[AnnotationEncryptionHash] {
		t.Error("a new encryption configuration leaves the pod template as it was: the pods would not roll")
	}
}
