package objects

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"sort"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
)

// FieldOwner is the server-side apply field manager of everything the
// operator writes.
const FieldOwner = client.FieldOwner("kubinception")

// ManagedBy labels every object the operator creates; the operator's cache
// only holds objects with it.
const (
	ManagedBy      = "app.kubernetes.io/managed-by"
	ManagedByValue = "kubinception"
)

// Apply server-side applies obj with the operator's field owner and label,
// controlled by owner, and reads the result back into obj. extraLabels are
// added to obj's own.
func Apply(ctx context.Context, c client.Client, owner, obj client.Object, extraLabels map[string]string) error {
	labels := obj.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	for k, v := range extraLabels {
		labels[k] = v
	}
	labels[ManagedBy] = ManagedByValue
	obj.SetLabels(labels)
	if err := controllerutil.SetControllerReference(owner, obj, c.Scheme()); err != nil {
		return err
	}
	obj.SetManagedFields(nil)
	obj.SetResourceVersion("")
	//nolint:staticcheck // typed objects with server-side apply
	return c.Patch(ctx, obj, client.Apply, client.ForceOwnership, FieldOwner)
}

// SameData says whether two Secrets' data are equal.
func SameData(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || string(w) != string(v) {
			return false
		}
	}
	return true
}

// HashData hashes a Secret's data in key order; a pod template annotated
// with it rolls when the data changes.
func HashData(data map[string][]byte) string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k))
		h.Write([]byte{0})
		h.Write(data[k])
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// AnnounceCondition logs a condition that changed and emits it as an Event
// on obj: a Warning when warning is set, Normal otherwise. rec may be nil
// (unit tests).
func AnnounceCondition(ctx context.Context, rec events.EventRecorder, obj runtime.Object, typ string, status metav1.ConditionStatus, reason, message string, warning bool) {
	ctrl.LoggerFrom(ctx).Info("condition changed", "type", typ, "status", status, "reason", reason, "message", message)
	if rec == nil {
		return
	}
	eventType := corev1.EventTypeNormal
	if warning {
		eventType = corev1.EventTypeWarning
	}
	rec.Eventf(obj, nil, eventType, reason, "Update"+typ, "%s: %s", typ, message)
}
