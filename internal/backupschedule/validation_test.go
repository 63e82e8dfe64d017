package backupschedule_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// TestValidation creates TenantClusters with spec.backup in a real API
// server holding the CRDs install applies: the CEL rules refuse a bad
// schedule, a missing retention and a too short maxAge, naming the field,
// and accept the forms the docs show.
func TestValidation(t *testing.T) {
	api := testenv.SharedAPIServer(t)
	ctx := context.Background()
	const ns = "backup-validation"
	if err := api.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	keep := int32(3)
	for i, tc := range []struct {
		spec kv1.BackupScheduleSpec
		want string // empty: accepted
	}{
		{spec: kv1.BackupScheduleSpec{Schedule: "0 3 * * *", Keep: &keep}},
		{spec: kv1.BackupScheduleSpec{Schedule: "CRON_TZ=Europe/Paris 0 3 * * 1-5", MaxAge: &metav1.Duration{Duration: 336 * time.Hour}, Target: kv1.BackupTargetS3}},
		{spec: kv1.BackupScheduleSpec{Schedule: "@daily", Keep: &keep}},
		{spec: kv1.BackupScheduleSpec{Schedule: "@every 6h", Keep: &keep}},
		{spec: kv1.BackupScheduleSpec{Schedule: "every night", Keep: &keep}, want: "spec.backup.schedule must be a cron expression"},
		{spec: kv1.BackupScheduleSpec{Schedule: "0 3 * *", Keep: &keep}, want: "spec.backup.schedule must be a cron expression"},
		{spec: kv1.BackupScheduleSpec{Schedule: "0 3 * * *"}, want: "spec.backup: give keep, maxAge or both"},
		{spec: kv1.BackupScheduleSpec{Schedule: "0 3 * * *", MaxAge: &metav1.Duration{Duration: 30 * time.Second}}, want: "spec.backup.maxAge must be at least 1m"},
		{spec: kv1.BackupScheduleSpec{Schedule: "0 3 * * *", Keep: new(int32)}, want: "spec.backup.keep"},
		{spec: kv1.BackupScheduleSpec{Schedule: "0 3 * * *", Keep: &keep, Target: "Tape"}, want: "spec.backup.target"},
	} {
		spec := tc.spec
		obj := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: "c-"}, Spec: kv1.TenantClusterSpec{Backup: &spec}}
		err := api.Client.Create(ctx, obj)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%d %+v refused: %v", i, spec, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%d %+v: %v, want a refusal naming %q", i, spec, err, tc.want)
		}
	}
}
