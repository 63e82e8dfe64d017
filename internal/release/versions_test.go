package release

import (
	"strings"
	"testing"
)

func TestValidateKubernetesVersion(t *testing.T) {
	tests := []struct {
		version string
		wantErr string
	}{
		{version: "v1.35.4"},
		{version: "v1.34.4"},
		{version: "v1.99.0", wantErr: "not supported"},
		{version: "v1.33.0", wantErr: "not supported"},
		{version: "1.35.4", wantErr: "not a Kubernetes release"},
		{version: "v1.35", wantErr: "not a Kubernetes release"},
		{version: "latest", wantErr: "not a Kubernetes release"},
		{version: "", wantErr: "not a Kubernetes release"},
	}
	for _, tt := range tests {
		t.Run(tt.version, func(t *testing.T) {
			err := ValidateKubernetesVersion(tt.version)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), "--version "+DefaultKubernetesVersion) {
				t.Errorf("error %q does not say which version to use", err)
			}
		})
	}
}

func TestStagingVersion(t *testing.T) {
	if got := StagingVersion("v1.35.4"); got != "v0.35.4" {
		t.Fatalf("StagingVersion = %q, want v0.35.4", got)
	}
}

func FuzzValidateKubernetesVersion(f *testing.F) {
	for _, s := range []string{"v1.35.4", "v1.99.0", "", "v1.35.4-rc.0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		if err := ValidateKubernetesVersion(v); err == nil && !versionPattern.MatchString(v) {
			t.Fatalf("accepted %q, which is not of the form v1.MINOR.PATCH", v)
		}
	})
}
