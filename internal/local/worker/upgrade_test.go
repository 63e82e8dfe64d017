package worker

import (
	"strings"
	"testing"
)

func TestCheckUpgrade(t *testing.T) {
	for _, tc := range []struct {
		target, controlPlane string
		wantErr              string
	}{
		{"v1.35.4", "v1.35.4", ""},
		{"v1.34.4", "v1.35.4", ""},
		{"v1.32.0", "v1.35.4", ""},
		{"v1.31.9", "v1.35.4", "more than 3 minors older"},
		{"v1.35.4", "v1.34.4", "newer than the control plane"},
		{"v1.35.5", "v1.35.4", "newer than the control plane"},
		{"latest", "v1.35.4", "not a Kubernetes version"},
		{"v1.35.4", "", "reports no running version"},
	} {
		err := CheckUpgrade(tc.target, tc.controlPlane)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s on %s: %v", tc.target, tc.controlPlane, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s on %s: error %v, want one saying %q", tc.target, tc.controlPlane, err, tc.wantErr)
		}
	}
}
