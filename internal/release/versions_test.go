package release

import (
	"fmt"
	"regexp"
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

// TestSupportedVersionPattern checks that the pattern the CRD's rule is built
// from agrees with ValidateKubernetesVersion, on every supported minor and
// on its neighbours.
func TestSupportedVersionPattern(t *testing.T) {
	re := regexp.MustCompile(SupportedVersionPattern())
	var versions []string
	for _, m := range SupportedMinors() {
		for _, minor := range []int{m - 1, m, m + 1, m * 10} {
			for _, patch := range []string{"0", "4", "17"} {
				versions = append(versions, fmt.Sprintf("v1.%d.%s", minor, patch))
			}
		}
	}
	versions = append(versions, DefaultKubernetesVersion, "v1.35", "1.35.4", "v1.35.4-rc.1", "v2.35.4", "latest", "")
	for _, v := range versions {
		if got, want := re.MatchString(v), ValidateKubernetesVersion(v) == nil; got != want {
			t.Errorf("%q: pattern matches = %v, ValidateKubernetesVersion accepts = %v", v, got, want)
		}
	}
	minors := SupportedMinors()
	for _, v := range []string{fmt.Sprintf("v1.%d.0", minors[0]), fmt.Sprintf("v1.%d.9", minors[len(minors)-1]), DefaultKubernetesVersion} {
		if !re.MatchString(v) {
			t.Errorf("pattern %s rejects the supported %s", re, v)
		}
	}
	for _, v := range []string{fmt.Sprintf("v1.%d.0", minors[0]-1), fmt.Sprintf("v1.%d.0", minors[len(minors)-1]+1)} {
		if re.MatchString(v) {
			t.Errorf("pattern %s accepts the unsupported %s", re, v)
		}
	}
}
