package cli

import (
	"strings"
	"testing"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

func TestCheckCompletable(t *testing.T) {
	pending := &kv1.CARotationStatus{Phase: kv1.CARotationPrepared, PendingNodes: []string{"demo-w1"}}
	for _, tt := range []struct {
		name  string
		st    *kv1.CARotationStatus
		force bool
		want  string
	}{
		{"never started", nil, false, "run start first"},
		{"still preparing", &kv1.CARotationStatus{Phase: kv1.CARotationPreparing}, false, "still Preparing"},
		{"a node on the old CA is named", pending, false, "demo-w1"},
		{"forced", pending, true, ""},
		{"every node moved", &kv1.CARotationStatus{Phase: kv1.CARotationPrepared}, false, ""},
		{"already completed: idempotent", &kv1.CARotationStatus{Phase: kv1.CARotationCompleted}, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := checkCompletable(tt.st, tt.force)
			if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestCheckNodeMovable(t *testing.T) {
	for _, tt := range []struct {
		st *kv1.CARotationStatus
		ok bool
	}{
		{nil, false},
		{&kv1.CARotationStatus{Phase: kv1.CARotationPreparing}, false},
		{&kv1.CARotationStatus{Phase: kv1.CARotationPrepared}, true},
		{&kv1.CARotationStatus{Phase: kv1.CARotationCompleting}, false},
		{&kv1.CARotationStatus{Phase: kv1.CARotationCompleted}, true},
	} {
		if err := checkNodeMovable(tt.st); (err == nil) != tt.ok {
			t.Errorf("%+v: %v, want ok=%v", tt.st, err, tt.ok)
		}
	}
}
