package migrationcontroller

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/metrics"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/migration"
	"kubinception.dev/kubinception/internal/pki"
)

// Event reasons.
const (
	ReasonMigrationStarted    = "MigrationStarted"
	ReasonMigrationPhase      = "MigrationPhase"
	ReasonMigrationCompleted  = "MigrationCompleted"
	ReasonMigrationRolledBack = "MigrationRolledBack"
	ReasonMigrationStuck      = "MigrationStuck"
	ReasonSourceReleased      = "MigrationSourceReleased"
)

// releaseRecheck is how often a completed move checks whether its
// control plane has left the source's gateways.
const releaseRecheck = 5 * time.Second

// retryAfter is how long a rolled back migration waits before it starts
// again (spec.datastore.name still names the destination).
const retryAfter = time.Minute

var (
	pauseSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "kubinception_migration_pause_seconds",
		Help:    "How long a migrated tenant's writes were held, from the pause to the switch (or the roll back).",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10},
	})
	durationSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubinception_migration_duration_seconds",
		Help:    "How long a migration took, by how it ended (Completed, RolledBack).",
		Buckets: prometheus.ExponentialBuckets(0.5, 2, 12),
	}, []string{"result"})
)

func init() { metrics.Registry.MustRegister(pauseSeconds, durationSeconds) }

// Reconciler moves a TenantCluster to the Datastore its spec names when
// that is not the one serving it (status.datastore.name), and finishes or
// rolls back a move an earlier operator left unfinished.
type Reconciler struct {
	Client client.Client
	// APIReader reads Secrets the cache does not hold.
	APIReader client.Reader
	Clock     clock.Clock
	Recorder  events.EventRecorder
	// GatewayNamespace holds the gateways' CA Secrets.
	GatewayNamespace string
	// Hold is the longest a tenant's writes are held (10s when zero).
	Hold time.Duration
}

// SetupWithManager registers the reconciler; one migration runs at a time.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("migration").
		For(&kv1.TenantCluster{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 1}).
		Complete(r)
}

// Reconcile starts, resumes or retries one tenant's migration.
func (r *Reconciler) Reconcile(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	tc := &kv1.TenantCluster{}
	if err := r.Client.Get(ctx, req.NamespacedName, tc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	if !tc.DeletionTimestamp.IsZero() {
		// A tenant going away needs no forwarding: its source's move
		// record goes at once (best effort: the TenantCluster may be
		// gone before this runs).
		if m := tc.Status.Migration; awaitingRelease(m) {
			if src, err := r.connect(ctx, m.Source); err == nil {
				defer src.Close()
				return reconcile.Result{}, migration.Release(ctx, src, string(tc.UID))
			}
		}
		return reconcile.Result{}, nil
	}
	if tc.Spec.Paused {
		return reconcile.Result{}, nil
	}
	want, serving := specDatastore(tc), tc.Status.Datastore.Name
	if serving == "" {
		// Not provisioned yet: the TenantCluster reconciler records
		// where it placed the tenant first.
		return reconcile.Result{}, nil
	}
	now := r.Clock.Now()
	m := tc.Status.Migration
	var from migration.Phase
	switch {
	case m != nil && !migration.Phase(m.Phase).Done():
		// Left unfinished by an operator that stopped.
		src, err := r.connect(ctx, m.Source)
		if err != nil {
			return reconcile.Result{}, err
		}
		defer src.Close()
		fwd, err := migration.Forwarded(ctx, src, string(tc.UID))
		if err != nil {
			return reconcile.Result{}, err
		}
		from, err = migration.Resume(migration.Phase(m.Phase), fwd)
		if err != nil {
			r.event(tc, corev1.EventTypeWarning, ReasonMigrationStuck, "%v", err)
			return reconcile.Result{RequeueAfter: retryAfter}, nil
		}
		log.Info("resuming an interrupted migration", "recorded", m.Phase, "forwarded", fwd, "from", from)
	case awaitingRelease(m):
		// The source forwards the tenant until its control plane has
		// rolled onto the destination; a new move waits for that, or
		// the record would be lost with the status that names it.
		return r.release(ctx, tc, m)
	case want != serving:
		if m != nil && m.Phase == kv1.MigrationPhase(migration.PhaseRolledBack) && m.Destination == want && m.CompletionTime != nil {
			if wait := m.CompletionTime.Add(retryAfter).Sub(now); wait > 0 {
				return reconcile.Result{RequeueAfter: wait}, nil
			}
		}
		attempts := int32(1)
		if m != nil && m.Destination == want {
			attempts = m.Attempts + 1
		}
		t := metav1.NewTime(now)
		if err := r.patch(ctx, tc, func(st *kv1.TenantClusterStatus) {
			st.Migration = &kv1.TenantMigrationStatus{Source: serving, Destination: want, Phase: kv1.MigrationPhase(migration.PhasePending), StartTime: &t, Attempts: attempts}
		}); err != nil {
			return reconcile.Result{}, err
		}
		r.event(tc, corev1.EventTypeNormal, ReasonMigrationStarted, "moving the tenant from Datastore %s to %s (attempt %d)", serving, want, attempts)
		m, from = tc.Status.Migration, migration.PhasePending
	default:
		return reconcile.Result{}, nil
	}
	return r.migrate(ctx, tc, m, from)
}

// migrate runs the migration recorded in m from phase from.
func (r *Reconciler) migrate(ctx context.Context, tc *kv1.TenantCluster, m *kv1.TenantMigrationStatus, from migration.Phase) (reconcile.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	src, err := r.connect(ctx, m.Source)
	if err != nil {
		return reconcile.Result{}, err
	}
	defer src.Close()
	dst, err := r.connect(ctx, m.Destination)
	if err != nil {
		return reconcile.Result{}, err
	}
	defer dst.Close()
	target, err := r.forwardTarget(ctx, m.Destination, string(tc.UID))
	if err != nil {
		return reconcile.Result{}, err
	}
	mg := &migration.Migrator{
		TenantID: string(tc.UID), Source: src, Destination: dst, Target: target, Hold: r.Hold, Log: log,
		Record: func(ctx context.Context, p migration.Phase) error {
			err := r.patch(ctx, tc, func(st *kv1.TenantClusterStatus) { st.Migration.Phase = kv1.MigrationPhase(p) })
			if err == nil && !p.Done() {
				r.event(tc, corev1.EventTypeNormal, ReasonMigrationPhase, "migration to Datastore %s: %s", m.Destination, p)
			}
			return err
		},
	}
	// The migration must not stop half-way when the reconcile's context
	// does: it holds the tenant's writes for a moment.
	res, runErr := mg.Run(context.WithoutCancel(ctx), from)
	end := metav1.NewTime(r.Clock.Now())
	if res.Pause > 0 {
		pauseSeconds.Observe(res.Pause.Seconds())
	}
	if runErr != nil {
		r.event(tc, corev1.EventTypeWarning, ReasonMigrationStuck, "migration to Datastore %s stopped in %s: %v", m.Destination, res.Phase, runErr)
		return reconcile.Result{}, runErr
	}
	durationSeconds.WithLabelValues(string(res.Phase)).Observe(res.Total.Seconds())
	err = r.patch(ctx, tc, func(st *kv1.TenantClusterStatus) {
		mm := st.Migration
		mm.Phase, mm.CompletionTime = kv1.MigrationPhase(res.Phase), &end
		if res.Keys > 0 {
			mm.Keys, mm.CopyRevision = int64(res.Keys), res.CopyRevision
		}
		if res.SwitchRevision > 0 {
			mm.SwitchRevision = res.SwitchRevision
		}
		if res.Pause > 0 {
			mm.Pause = &metav1.Duration{Duration: res.Pause.Round(time.Millisecond)}
		}
		if res.Phase == migration.PhaseCompleted {
			// From now on the tenant is served by the destination: its
			// control plane gets the destination's certificate and
			// gateway (a rollout; the source's gateways forward it
			// meanwhile).
			st.Datastore.Name = mm.Destination
			mm.Message = fmt.Sprintf("moved %d keys; writes held %s", res.Keys, res.Pause.Round(time.Millisecond))
		} else {
			mm.Message = fmt.Sprintf("rolled back: %v", res.Err)
		}
	})
	if err != nil {
		return reconcile.Result{}, err
	}
	if res.Phase == migration.PhaseCompleted {
		r.event(tc, corev1.EventTypeNormal, ReasonMigrationCompleted, "moved to Datastore %s in %s: %d keys, writes held %s, revisions start at %d",
			m.Destination, res.Total.Round(time.Millisecond), res.Keys, res.Pause.Round(time.Millisecond), res.SwitchRevision)
		return reconcile.Result{}, nil
	}
	r.event(tc, corev1.EventTypeWarning, ReasonMigrationRolledBack, "the move to Datastore %s rolled back, retrying in %s: %v", m.Destination, retryAfter, res.Err)
	return reconcile.Result{RequeueAfter: retryAfter}, nil
}

// awaitingRelease reports whether m is a completed move whose source
// still forwards the tenant.
func awaitingRelease(m *kv1.TenantMigrationStatus) bool {
	return m != nil && m.Phase == kv1.MigrationPhase(migration.PhaseCompleted) && m.ReleaseTime == nil
}

// release removes the source's move record of a completed move once no
// API server of the tenant uses the source's gateway: from then on nothing
// reaches the source for the tenant, and forwarding is no longer needed.
func (r *Reconciler) release(ctx context.Context, tc *kv1.TenantCluster, m *kv1.TenantMigrationStatus) (reconcile.Result, error) {
	ds := &kv1.Datastore{}
	err := r.Client.Get(ctx, types.NamespacedName{Name: m.Source}, ds)
	switch {
	case apierrors.IsNotFound(err):
		// The source is gone, and its records with it.
	case err != nil:
		return reconcile.Result{}, fmt.Errorf("Datastore %s: %w", m.Source, err)
	default:
		using, err := r.podsUsing(ctx, tc, ds.Status.Gateway.Endpoint)
		if err != nil {
			return reconcile.Result{}, err
		}
		if len(using) > 0 {
			ctrl.LoggerFrom(ctx).V(1).Info("waiting for the control plane to leave the source's gateway", "source", m.Source, "pods", using)
			return reconcile.Result{RequeueAfter: releaseRecheck}, nil
		}
		src, err := r.connect(ctx, m.Source)
		if err != nil {
			return reconcile.Result{}, err
		}
		defer src.Close()
		if err := migration.Release(ctx, src, string(tc.UID)); err != nil {
			return reconcile.Result{}, err
		}
	}
	t := metav1.NewTime(r.Clock.Now())
	if err := r.patch(ctx, tc, func(st *kv1.TenantClusterStatus) { st.Migration.ReleaseTime = &t }); err != nil {
		return reconcile.Result{}, err
	}
	r.event(tc, corev1.EventTypeNormal, ReasonSourceReleased, "the control plane uses Datastore %s's gateway alone: Datastore %s no longer forwards the tenant", m.Destination, m.Source)
	return reconcile.Result{}, nil
}

// podsUsing names the tenant's control-plane pods, terminating ones
// included (they serve until they exit), whose API server is configured
// with gateway endpoint.
func (r *Reconciler) podsUsing(ctx context.Context, tc *kv1.TenantCluster, endpoint string) ([]string, error) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(tc.Namespace), client.MatchingLabels(controlplane.Labels(tc.Name))); err != nil {
		return nil, fmt.Errorf("list the control plane's pods: %w", err)
	}
	var using []string
	for _, p := range pods.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if slices.Contains(controlplane.EtcdServers(&p.Spec), endpoint) {
			using = append(using, p.Name)
		}
	}
	return using, nil
}

// patch changes the TenantCluster's status with a merge patch of exactly
// what mutate changed (the TenantCluster reconciler owns the rest).
func (r *Reconciler) patch(ctx context.Context, tc *kv1.TenantCluster, mutate func(*kv1.TenantClusterStatus)) error {
	before := tc.DeepCopy()
	mutate(&tc.Status)
	if err := r.Client.Status().Patch(ctx, tc, client.MergeFrom(before)); err != nil {
		return fmt.Errorf("record the migration in the status: %w", err)
	}
	return nil
}

func (r *Reconciler) event(tc *kv1.TenantCluster, typ, reason, format string, args ...any) {
	if r.Recorder != nil {
		r.Recorder.Eventf(tc, nil, typ, reason, "Migrate", format, args...)
	}
}

// connect opens a root client of a Datastore (closed by the caller).
func (r *Reconciler) connect(ctx context.Context, name string) (*clientv3.Client, error) {
	ds := &kv1.Datastore{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, ds); err != nil {
		return nil, fmt.Errorf("Datastore %s: %w", name, err)
	}
	access, err := datastore.LoadAccess(ctx, r.APIReader, ds)
	if err != nil {
		return nil, err
	}
	cli, err := datastore.Connect(access.Credentials)
	if err != nil {
		return nil, fmt.Errorf("connect to Datastore %s: %w", name, err)
	}
	return cli, nil
}

// forwardTarget is the destination's gateway as the source's gateways
// reach it for the tenant: its Service, its CA, and a client certificate
// for the tenant issued by that CA.
func (r *Reconciler) forwardTarget(ctx context.Context, name, uid string) (gateway.ForwardTarget, error) {
	ds := &kv1.Datastore{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, ds); err != nil {
		return gateway.ForwardTarget{}, fmt.Errorf("Datastore %s: %w", name, err)
	}
	if ds.Status.Gateway.Endpoint == "" {
		return gateway.ForwardTarget{}, fmt.Errorf("Datastore %s has no gateway endpoint yet", name)
	}
	s := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.GatewayNamespace, Name: gatewaydeploy.CASecretName(name)}, s); err != nil {
		return gateway.ForwardTarget{}, fmt.Errorf("the gateway CA of Datastore %s: %w", name, err)
	}
	ca, err := pki.ParseKeyPair(s.Data[gatewaydeploy.FileCACert], s.Data[gatewaydeploy.FileCAKey])
	if err != nil {
		return gateway.ForwardTarget{}, fmt.Errorf("the gateway CA of Datastore %s: %w", name, err)
	}
	tn, err := datastore.TenancyFor(uid)
	if err != nil {
		return gateway.ForwardTarget{}, err
	}
	kp, err := ca.Issue(pki.Spec{CommonName: tn.User, Client: true}, r.Clock.Now())
	if err != nil {
		return gateway.ForwardTarget{}, fmt.Errorf("the tenant's certificate for Datastore %s: %w", name, err)
	}
	return gateway.ForwardTarget{Endpoint: strings.TrimPrefix(ds.Status.Gateway.Endpoint, "https://"), CAPEM: ca.CertPEM, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM}, nil
}

// specDatastore is the Datastore the spec asks for.
func specDatastore(tc *kv1.TenantCluster) string {
	if tc.Spec.Datastore.Name == "" {
		return "default"
	}
	return tc.Spec.Datastore.Name
}
