package tenantcluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// TestCheckSpec: a registry the operator does not allow, or an object the API server's rules would refuse today but
// that was stored before they existed stops the reconcile before anything
// is applied, with a terminal error and a False condition naming the
// field and the flag.
func TestCheckSpec(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*kv1.TenantCluster)
		reason  string
		mention string
	}{
		{"allowed extra arguments", func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--oidc-issuer-url=https://issuer.example.com", "--event-ttl=2h"}
		}, "", ""},
		{"extra argument weakening authorization", func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--event-ttl=2h", "--authorization-mode=AlwaysAllow"}
		}, kv1.ReasonExtraArgsNotAllowed, "spec.controlPlane.extraArgs: flag --authorization-mode"},
		{"extra argument replacing the datastore", func(tc *kv1.TenantCluster) {
			tc.Spec.ControlPlane.ExtraArgs = []string{"--etcd-servers=https://elsewhere:2379"}
		}, kv1.ReasonExtraArgsNotAllowed, "flag --etcd-servers"},
		{"the default registry", func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ImageRegistry = "kubinception.local" }, "", ""},
		{"an allowed registry's path", func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ImageRegistry = "mirror.example.com/kube" }, "", ""},
		{"another registry", func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ImageRegistry = "evil.example.com" },
			kv1.ReasonRegistryNotAllowed, `spec.controlPlane.imageRegistry "evil.example.com" is not allowed`},
		{"a host that starts like an allowed one", func(tc *kv1.TenantCluster) { tc.Spec.ControlPlane.ImageRegistry = "mirror.example.com.evil.net" },
			kv1.ReasonRegistryNotAllowed, "mirror.example.com.evil.net"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc := &kv1.TenantCluster{}
			tt.mutate(tc)
			s := newScope(tc, time.Now())
			r := &Reconciler{Registry: "kubinception.local", AllowedRegistries: []string{"kubinception.local", "mirror.example.com"}}
			res, err := r.checkSpec(context.Background(), s)
			got := s.results[kv1.ConditionControlPlaneAvailable]
			if tt.reason == "" {
				if err != nil || !res.IsZero() || got != (result{}) {
					t.Fatalf("checkSpec = %v, %v, %+v; want to pass", res, err, got)
				}
				return
			}
			if !errors.Is(err, reconcile.TerminalError(nil)) {
				t.Errorf("error %v, want a terminal error", err)
			}
			if got.ok || got.reason != tt.reason || !strings.Contains(got.message, tt.mention) {
				t.Errorf("ControlPlaneAvailable %+v, want False %s mentioning %q", got, tt.reason, tt.mention)
			}
		})
	}
}
