package backupcontroller

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"filippo.io/age"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/pki"
)

// Finalizer deletes a TenantBackup's archive before the TenantBackup.
const Finalizer = "kubinception.dev/backup-archive"

// KeySecretName is the Secret, in the operator's namespace, holding the
// platform's backup key: "identity" (the age secret key, needed to
// restore) and "recipient" (its public key, which backups are encrypted
// to). The operator creates it on the first backup; keep a copy outside
// the admin cluster, since no backup can be restored without it.
const KeySecretName = "kubinception-backup-key"

// Keys of KeySecretName.
const (
	KeyIdentity  = "identity"
	KeyRecipient = "recipient"
)

// maxAttempts is how many copies are tried before a backup fails.
const maxAttempts = 3

// Reconciler reconciles TenantBackups.
type Reconciler struct {
	Client client.Client
	// APIReader reads Secrets and Services the cache does not hold.
	APIReader client.Reader
	Clock     clock.Clock
	Recorder  events.EventRecorder
	// Target is the Volume target, a directory on a volume of the admin
	// cluster; nil when the operator has none.
	Target backup.Target
	// TargetName says in status where Target is (e.g. dir:/backups).
	TargetName string
	// S3 is the S3 target; nil when the operator has none. With neither
	// target, every backup fails with a message saying how to configure
	// one.
	S3 *S3Settings
	// Namespace is the operator's namespace, which holds the backup key.
	Namespace string
	// GatewayNamespace holds the gateways' Services and CA Secrets.
	GatewayNamespace string
	// Gateway returns a client of a Datastore gateway's admin API; nil
	// dials the gateway's Service with a certificate issued from the
	// gateway's CA.
	Gateway func(ctx context.Context, datastore string) (*gateway.AdminClient, error)
	// Timeout bounds one copy (30 minutes when zero).
	Timeout time.Duration
}

// SetupWithManager registers the reconciler. Backups run two at a time:
// each one is a long stream through a gateway.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&kv1.TenantBackup{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 2}).
		Complete(r)
}

// Reconcile copies a TenantBackup's cluster once; Completed and Failed are
// final. A copy interrupted by a crash (status Running) is started again.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	tb := &kv1.TenantBackup{}
	if err := r.Client.Get(ctx, req.NamespacedName, tb); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !tb.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.delete(ctx, tb)
	}
	if tb.Status.Phase == kv1.BackupCompleted || tb.Status.Phase == kv1.BackupFailed {
		return ctrl.Result{}, nil
	}
	// The cache may not hold the status this controller wrote a moment
	// ago (Completed after Running): read it from the API server before
	// copying again, or one backup is copied twice.
	if tb.Status.Phase == kv1.BackupRunning {
		fresh := &kv1.TenantBackup{}
		if err := r.APIReader.Get(ctx, req.NamespacedName, fresh); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		if fresh.Status.Phase == kv1.BackupCompleted || fresh.Status.Phase == kv1.BackupFailed {
			return ctrl.Result{}, nil
		}
	}
	if controllerutil.AddFinalizer(tb, Finalizer) {
		return ctrl.Result{}, r.Client.Update(ctx, tb)
	}

	tc := &kv1.TenantCluster{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: tb.Namespace, Name: tb.Spec.Cluster}, tc); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, r.fail(ctx, tb, "ClusterNotFound", fmt.Sprintf("spec.cluster: TenantCluster %q not found in namespace %q", tb.Spec.Cluster, tb.Namespace))
		}
		return ctrl.Result{}, err
	}
	kind := r.resolveTarget(tb.Spec.Target)
	if msg := r.missingTarget(kind); msg != "" {
		return ctrl.Result{}, r.fail(ctx, tb, "NoBackupTarget", msg)
	}
	if tb.Status.TenantUID != "" && tb.Status.TenantUID != string(tc.UID) {
		return ctrl.Result{}, r.fail(ctx, tb, "ClusterReplaced", fmt.Sprintf("TenantCluster %q was deleted and created again since this backup started: back up the new one with another TenantBackup", tc.Name))
	}

	name := archiveName(tb)
	base := tb.DeepCopy()
	tb.Status.Phase = kv1.BackupRunning
	tb.Status.Attempts++
	tb.Status.TenantUID = string(tc.UID)
	tb.Status.Datastore = tc.Spec.Datastore.Name
	tb.Status.Target = kind
	tb.Status.Location = r.location(kind, name)
	tb.Status.Message = "copying the tenant's keys"
	if err := r.Client.Status().Patch(ctx, tb, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, err
	}
	r.event(tb, corev1.EventTypeNormal, "BackupStarted", "copying TenantCluster %s (attempt %d) to %s", tc.Name, tb.Status.Attempts, tb.Status.Location)

	start := r.Clock.Now()
	keysBefore, hadKeys, err := r.encryptionKeys(ctx, tc)
	if err != nil {
		return ctrl.Result{}, err
	}
	m, err := r.copy(ctx, kind, tb.Status.Datastore, string(tc.UID), name)
	if err == nil {
		err = r.keepEncryptionKeys(ctx, kind, tc, name, keysBefore, hadKeys)
	}
	if err != nil {
		log.Error(err, "backup failed", "attempt", tb.Status.Attempts)
		if tb.Status.Attempts >= maxAttempts {
			return ctrl.Result{}, r.fail(ctx, tb, "BackupFailed", fmt.Sprintf("after %d attempts: %v", tb.Status.Attempts, err))
		}
		r.event(tb, corev1.EventTypeWarning, "BackupRetrying", "attempt %d failed: %v", tb.Status.Attempts, err)
		// Retried with the controller's back-off.
		return ctrl.Result{}, err
	}
	base = tb.DeepCopy()
	startTime, done := metav1.NewTime(start), metav1.NewTime(r.Clock.Now())
	tb.Status.Phase = kv1.BackupCompleted
	tb.Status.Message = ""
	tb.Status.Revision = m.Revision
	tb.Status.Objects = int64(m.Objects)
	tb.Status.DataBytes = m.DataBytes
	tb.Status.ArchiveBytes = m.ArchiveBytes
	tb.Status.SHA256 = m.SHA256
	tb.Status.StartTime, tb.Status.CompletionTime = &startTime, &done
	if err := r.Client.Status().Patch(ctx, tb, client.MergeFrom(base)); err != nil {
		return ctrl.Result{}, err
	}
	r.event(tb, corev1.EventTypeNormal, "BackupCompleted", "%d objects at revision %d, %d bytes stored, in %s",
		m.Objects, m.Revision, m.ArchiveBytes, done.Sub(start).Round(time.Millisecond))
	return ctrl.Result{}, nil
}

func (r *Reconciler) copy(ctx context.Context, kind kv1.BackupTarget, datastore, tenantUID, name string) (backup.Manifest, error) {
	timeout := r.Timeout
	if timeout == 0 {
		timeout = 30 * time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	_, to, err := r.Key(ctx)
	if err != nil {
		return backup.Manifest{}, err
	}
	dial := r.Gateway
	if dial == nil {
		dial = r.dialGateway
	}
	admin, err := dial(ctx, datastore)
	if err != nil {
		return backup.Manifest{}, err
	}
	target, err := r.open(ctx, kind)
	if err != nil {
		return backup.Manifest{}, err
	}
	return backup.Create(ctx, target, name, admin.Snapshotter(tenantUID, to))
}

// archiveName is the name of a TenantBackup's archive in the target: its
// UID, unique across namespaces and across re-creations.
func archiveName(tb *kv1.TenantBackup) string { return string(tb.UID) }

func (r *Reconciler) fail(ctx context.Context, tb *kv1.TenantBackup, reason, msg string) error {
	base := tb.DeepCopy()
	tb.Status.Phase = kv1.BackupFailed
	tb.Status.Message = msg
	if err := r.Client.Status().Patch(ctx, tb, client.MergeFrom(base)); err != nil {
		return err
	}
	r.event(tb, corev1.EventTypeWarning, reason, "%s", msg)
	return nil
}

func (r *Reconciler) delete(ctx context.Context, tb *kv1.TenantBackup) error {
	if !controllerutil.ContainsFinalizer(tb, Finalizer) {
		return nil
	}
	if tb.Status.Location != "" {
		kind := storedTarget(tb)
		if msg := r.missingTarget(kind); msg != "" {
			// Nothing can reach the archive: say where it stays
			// rather than keep the TenantBackup forever.
			r.event(tb, corev1.EventTypeWarning, "ArchiveLeft", "the archive stays at %s: %s", tb.Status.Location, msg)
		} else {
			target, err := r.open(ctx, kind)
			if err == nil {
				err = backup.Remove(ctx, target, archiveName(tb))
			}
			if err != nil {
				return fmt.Errorf("delete the archive %s: %w", tb.Status.Location, err)
			}
		}
	}
	controllerutil.RemoveFinalizer(tb, Finalizer)
	return r.Client.Update(ctx, tb)
}

func (r *Reconciler) event(tb *kv1.TenantBackup, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tb, nil, typ, reason, "Backup", format, args...)
	}
}

// Key returns the platform's backup key, creating it on first use.
func (r *Reconciler) Key(ctx context.Context) (*age.X25519Identity, *age.X25519Recipient, error) {
	ref := types.NamespacedName{Namespace: r.Namespace, Name: KeySecretName}
	s := &corev1.Secret{}
	err := r.APIReader.Get(ctx, ref, s)
	if apierrors.IsNotFound(err) {
		id, gerr := age.GenerateX25519Identity()
		if gerr != nil {
			return nil, nil, gerr
		}
		s = &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Namespace: r.Namespace, Name: KeySecretName},
			Data:       map[string][]byte{KeyIdentity: []byte(id.String()), KeyRecipient: []byte(id.Recipient().String())},
		}
		err = r.Client.Create(ctx, s)
		if apierrors.IsAlreadyExists(err) {
			err = r.APIReader.Get(ctx, ref, s)
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("backup key Secret %s: %w", ref, err)
	}
	to, err := age.ParseX25519Recipient(string(s.Data[KeyRecipient]))
	if err != nil {
		return nil, nil, fmt.Errorf("backup key Secret %s: %q must hold an age public key (age1...): %w", ref, KeyRecipient, err)
	}
	var id *age.X25519Identity
	if raw := s.Data[KeyIdentity]; len(raw) > 0 {
		if id, err = age.ParseX25519Identity(string(raw)); err != nil {
			return nil, nil, fmt.Errorf("backup key Secret %s: %q must hold an age secret key (AGE-SECRET-KEY-...)", ref, KeyIdentity)
		}
	}
	return id, to, nil
}

// dialGateway is a client of the admin API of a Datastore's gateway, at
// its Service, with an admin certificate issued from the gateway's CA for
// the call.
func (r *Reconciler) dialGateway(ctx context.Context, datastore string) (*gateway.AdminClient, error) {
	caSecret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.GatewayNamespace, Name: gatewaydeploy.CASecretName(datastore)}, caSecret); err != nil {
		return nil, fmt.Errorf("gateway CA of Datastore %q: %w", datastore, err)
	}
	ca, err := pki.ParseKeyPair(caSecret.Data[gatewaydeploy.FileCACert], caSecret.Data[gatewaydeploy.FileCAKey])
	if err != nil {
		return nil, fmt.Errorf("gateway CA of Datastore %q: %w", datastore, err)
	}
	svc := &corev1.Service{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.GatewayNamespace, Name: gatewaydeploy.ServiceName(datastore)}, svc); err != nil {
		return nil, fmt.Errorf("gateway Service of Datastore %q: %w", datastore, err)
	}
	if svc.Spec.ClusterIP == "" || svc.Spec.ClusterIP == corev1.ClusterIPNone {
		return nil, errors.New("the gateway Service has no cluster IP")
	}
	tc, err := AdminTLS(ca, r.Clock.Now())
	if err != nil {
		return nil, err
	}
	return gateway.NewAdminClient(gatewaydeploy.AdminAddress(svc.Spec.ClusterIP), tc), nil
}

// adminCertValidity bounds the admin certificate issued for one copy or
// restore: it lives in the operator's memory only, for that call.
const adminCertValidity = time.Hour

// AdminTLS is the client configuration of the gateway admin API: a new
// admin certificate from the gateway's CA, which also signs the gateway's
// serving certificate.
func AdminTLS(ca *pki.KeyPair, now time.Time) (*tls.Config, error) {
	kp, err := ca.IssueFor(pki.Spec{CommonName: gateway.AdminCommonName, Client: true}, now, adminCertValidity)
	if err != nil {
		return nil, fmt.Errorf("issue the gateway admin certificate: %w", err)
	}
	cert, err := tls.X509KeyPair(kp.CertPEM, kp.KeyPEM)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}
