package backupcontroller

import (
	"context"
	"errors"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
)

// A clone is a restore into another TenantCluster than the one backed up:
// a new one, paused, whose control plane never ran. It gets the backup's
// keys under its own prefix and the encryption keys the backup's Secrets
// were written with; the TenantCluster reconciler then gives it its own
// PKI and starts it on the restored state. Service-account tokens stored
// in the backup were signed by the source's key and do not work in the
// clone; tokens projected into pods are issued again by the kubelets.

// encryptionKeys reads the encryption keys of a tenant; found is false
// when it has none (a tenant that never ran, or one from before
// encryption).
func (r *Reconciler) encryptionKeys(ctx context.Context, tc *kv1.TenantCluster) (keys controlplane.EncryptionKeys, found bool, err error) {
	s := &corev1.Secret{}
	err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.EncryptionSecretName(tc.Name)}, s)
	if apierrors.IsNotFound(err) {
		return keys, false, nil
	}
	if err != nil {
		return keys, false, err
	}
	keys, err = controlplane.ParseEncryptionConfig(s.Data[controlplane.FileEncryptionConfig])
	if err != nil {
		return keys, false, fmt.Errorf("Secret %s/%s: %w", s.Namespace, s.Name, err)
	}
	return keys, true, nil
}

// mergeKeys is every key of before and after, after's write key writing:
// the keys read before a copy and after it, so a key rotation running
// during the copy cannot leave out a key some copied value was written
// with.
func mergeKeys(before, after controlplane.EncryptionKeys) controlplane.EncryptionKeys {
	merged := controlplane.EncryptionKeys{Write: after.Write}
	if merged.Write == nil {
		merged.Write = before.Write
	}
	seen := map[string]bool{}
	if merged.Write != nil {
		seen[merged.Write.Name] = true
	}
	for _, keys := range []controlplane.EncryptionKeys{after, before} {
		all := keys.Read
		if keys.Write != nil {
			all = append([]controlplane.EncryptionKey{*keys.Write}, keys.Read...)
		}
		for _, k := range all {
			if !seen[k.Name] {
				seen[k.Name] = true
				merged.Read = append(merged.Read, k)
			}
		}
	}
	return merged
}

// keepEncryptionKeys stores, beside the archive, the tenant's encryption
// keys merged with those read before the copy. A tenant without keys has
// nothing stored.
func (r *Reconciler) keepEncryptionKeys(ctx context.Context, kind kv1.BackupTarget, tc *kv1.TenantCluster, name string, before controlplane.EncryptionKeys, hadBefore bool) error {
	after, found, err := r.encryptionKeys(ctx, tc)
	if err != nil {
		return err
	}
	if !found && !hadBefore {
		return nil
	}
	config, err := controlplane.RenderEncryptionConfig(mergeKeys(before, after))
	if err != nil {
		return err
	}
	_, to, err := r.Key(ctx)
	if err != nil {
		return err
	}
	target, err := r.open(ctx, kind)
	if err != nil {
		return err
	}
	return backup.PutEncryptionConfig(ctx, target, name, config, to)
}

// checkCloneTarget says why a TenantCluster cannot receive a clone, or
// nothing when it can: paused, and no control plane ever ran.
func (r *RestoreReconciler) checkCloneTarget(ctx context.Context, tc *kv1.TenantCluster, tb *kv1.TenantBackup) (string, error) {
	if !tc.Spec.Paused {
		return fmt.Sprintf("spec.cluster: TenantCluster %q is not paused: a clone goes into a new TenantCluster created with spec.paused true (kubinception backup restore %s --into %s creates one)", tc.Name, tb.Name, tc.Name), nil
	}
	if tc.Status.Version != "" {
		return fmt.Sprintf("spec.cluster: TenantCluster %q has run (status.version %s): a clone goes into a new TenantCluster; to roll a cluster back, restore a backup of that cluster", tc.Name, tc.Status.Version), nil
	}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.DeploymentName(tc.Name)}, &appsv1.Deployment{})
	switch {
	case err == nil:
		return fmt.Sprintf("spec.cluster: TenantCluster %q has a control plane: a clone goes into a new TenantCluster whose control plane never started", tc.Name), nil
	case !apierrors.IsNotFound(err):
		return "", err
	}
	return "", nil
}

// cloneEncryption gives the clone the encryption keys kept with the
// backup, before its control plane ever starts. When the backup holds more
// than one key (a rotation was under way), a rotation of the clone is
// requested, so every Secret ends up written with one key. A backup
// without keys restores Secrets that were stored in plaintext only.
func (r *RestoreReconciler) cloneEncryption(ctx context.Context, tr *kv1.TenantRestore, tb *kv1.TenantBackup, tc *kv1.TenantCluster) error {
	b := r.Backups
	id, _, err := b.Key(ctx)
	if err != nil {
		return err
	}
	if id == nil {
		return fmt.Errorf("Secret %s/%s holds no %q: the backup key's secret half is needed to restore", b.Namespace, KeySecretName, KeyIdentity)
	}
	kind := storedTarget(tb)
	if msg := b.missingTarget(kind); msg != "" {
		return fmt.Errorf("backup %s is kept in the %s target: %s", tb.Name, kind, msg)
	}
	target, err := b.open(ctx, kind)
	if err != nil {
		return err
	}
	config, err := backup.ReadEncryptionConfig(ctx, target, archiveName(tb), id)
	if errors.Is(err, backup.ErrNoEncryptionConfig) {
		r.event(tr, corev1.EventTypeWarning, "NoEncryptionKeys", "backup %s holds no encryption keys: Secrets its cluster stored encrypted will not read in %s", tb.Name, tc.Name)
		return nil
	}
	if err != nil {
		return err
	}
	keys, err := controlplane.ParseEncryptionConfig(config)
	if err != nil {
		return fmt.Errorf("backup %s: its encryption configuration: %w", tb.Name, err)
	}
	secret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: controlplane.EncryptionSecretName(tc.Name), Namespace: tc.Namespace},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{controlplane.FileEncryptionConfig: config},
	}
	if err := objects.Apply(ctx, r.Client, tc, secret, map[string]string{controlplane.LabelTenant: tc.Name}); err != nil {
		return fmt.Errorf("write the encryption Secret of %s: %w", tc.Name, err)
	}
	if len(keys.Read) > 0 && tc.Annotations[kv1.AnnotationEncryptionKeyRotation] == "" {
		patch := client.MergeFrom(tc.DeepCopy())
		metav1.SetMetaDataAnnotation(&tc.ObjectMeta, kv1.AnnotationEncryptionKeyRotation, "clone-"+tr.Name)
		if err := r.Client.Patch(ctx, tc, patch); err != nil {
			return fmt.Errorf("request a key rotation of %s: %w", tc.Name, err)
		}
	}
	return nil
}

// datastoreOf is the Datastore a TenantCluster is placed on.
func datastoreOf(tc *kv1.TenantCluster) string {
	if tc.Spec.Datastore.Name == "" {
		return "default"
	}
	return tc.Spec.Datastore.Name
}
