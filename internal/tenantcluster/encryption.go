package tenantcluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
)

// A tenant's Secrets are encrypted by its API servers with a key of its
// own, kept in the Secret <name>-encryption beside its PKI Secret (owned
// by the TenantCluster, mounted by the API server container alone). Where
// the key stands is status.encryption: the phase a rotation is in and the
// names of the keys, never the keys. The Secret is always written before
// status names what it holds, and each reconcile moves at most one step,
// so after a crash the Secret is at most one step ahead of status;
// planEncryption derives the Secret from status again, and a step ahead
// is always safe to step back from (every key a value may have been
// written with stays readable).
//
// A rotation follows upstream's procedure: the new key is added as a read
// key and every API server rolled (KeyAdded); it becomes the write key and
// every API server rolled again (KeyPromoted); every Secret is rewritten
// through the tenant's API (Rewriting); the old key is dropped and every
// API server rolled (OldKeyRemoved); then Idle. A tenant whose control
// plane ran before encryption existed takes the same path from plaintext
// (identity) to its first key; a new tenant starts with its key.

// Waits of a rotation.
const (
	// encryptionRolloutRetry is how often a rotation looks whether every
	// API server runs its step's configuration (a pod that finishes
	// terminating sends no Deployment event).
	encryptionRolloutRetry = 5 * time.Second
	// encryptionKeyMissingRetry is how often a missing key Secret is
	// looked for again.
	encryptionKeyMissingRetry = 30 * time.Second
	// rewritePageSize and rewritePagesPerReconcile bound one reconcile's
	// share of a rewrite; the rest goes on at once in the next.
	rewritePageSize          = 250
	rewritePagesPerReconcile = 8
	rewriteContinueAfter     = 100 * time.Millisecond
)

// encryptionScope is what the encryption phase found, for the control
// plane and rewrite phases.
type encryptionScope struct {
	// hash is the hash of the Secret's data, on the pod template.
	hash string
}

// encryptionInput is what planEncryption looks at besides status.
type encryptionInput struct {
	// exists says whether the key Secret exists; stored are its keys.
	exists bool
	stored cp.EncryptionKeys
	// fresh says that no API server of the tenant ever ran: its first key
	// may write from the start.
	fresh bool
	// requested is the rotation annotation's value.
	requested string
	// running is the hash of the configuration every API server runs;
	// empty while pods with different configurations run.
	running string
	now     metav1.Time
}

// encryptionPlan is the next status.encryption, the Secret's data for it
// and its hash, and the step taken (empty when none).
type encryptionPlan struct {
	state kv1.TenantEncryptionStatus
	data  map[string][]byte
	hash  string
	step  string
}

// errEncryptionKeyMissing says that a key values may be written with is
// in no Secret: the operator must not mint another, or those values are
// lost for good.
type errEncryptionKeyMissing struct{ key, secret string }

func (e errEncryptionKeyMissing) Error() string {
	return fmt.Sprintf("encryption key %s is not in Secret %s, and Secrets in the datastore may be encrypted with it: restore the Secret from a backup of the admin cluster; the operator will not mint a new key, which would leave them unreadable",
		e.key, e.secret)
}

// planEncryption is the encryption key's state machine: from status and
// what it observed, the next status and the Secret that goes with it.
// mint makes a new key of a name.
func planEncryption(st kv1.TenantEncryptionStatus, in encryptionInput, secretName string, mint func(string) (cp.EncryptionKey, error)) (encryptionPlan, error) {
	st.Provider = cp.EncryptionProvider
	pool := map[string]cp.EncryptionKey{}
	for _, name := range in.stored.Names() {
		if k := in.stored.Find(name); k != nil {
			pool[name] = *k
		}
	}
	newKey := func() (cp.EncryptionKey, error) {
		names := []string{st.KeyName, st.NewKeyName}
		for n := range pool {
			names = append(names, n)
		}
		k, err := mint(cp.NextEncryptionKeyName(names...))
		if err == nil {
			pool[k.Name] = k
		}
		return k, err
	}
	step := ""
	if st.Phase == "" {
		if !in.exists && in.fresh {
			k, err := newKey()
			if err != nil {
				return encryptionPlan{}, err
			}
			st.Phase, st.KeyName, st.ObservedRotation = kv1.EncryptionIdle, k.Name, in.requested
			step = fmt.Sprintf("key %s encrypts every Secret from the start", k.Name)
		} else {
			// Adopt what the Secret holds (status was lost, or the
			// first write of status failed).
			st.Phase = kv1.EncryptionIdle
			if in.stored.Write != nil {
				st.KeyName = in.stored.Write.Name
			}
		}
	}
	for _, name := range requiredKeys(st) {
		if _, ok := pool[name]; !ok {
			return encryptionPlan{}, errEncryptionKeyMissing{key: name, secret: secretName}
		}
	}
	rolledOut := func() bool {
		_, h, err := encryptionData(desiredKeys(st, pool))
		return err == nil && h == in.running
	}
	switch st.Phase {
	case kv1.EncryptionIdle:
		if st.KeyName == "" || in.requested != "" && in.requested != st.ObservedRotation {
			// A key left by a rotation that began and never got into
			// status is taken up again.
			var next cp.EncryptionKey
			for _, name := range in.stored.Names() {
				if k, ok := pool[name]; ok && name != st.KeyName {
					next = k
					break
				}
			}
			if next.Name == "" {
				var err error
				if next, err = newKey(); err != nil {
					return encryptionPlan{}, err
				}
			}
			st.Phase, st.NewKeyName, st.ObservedRotation, st.SecretsRewritten = kv1.EncryptionKeyAdded, next.Name, in.requested, 0
			step = fmt.Sprintf("added key %s beside %s as a read key: it writes nothing until every API server can read it", next.Name, keyText(st.KeyName))
		}
	case kv1.EncryptionKeyAdded:
		if _, ok := pool[st.NewKeyName]; !ok {
			// Nothing was written with a key that never wrote.
			k, err := newKey()
			if err != nil {
				return encryptionPlan{}, err
			}
			st.NewKeyName = k.Name
		} else if rolledOut() {
			st.Phase = kv1.EncryptionKeyPromoted
			step = fmt.Sprintf("every API server reads key %s: it now writes, %s still reads", st.NewKeyName, keyText(st.KeyName))
		}
	case kv1.EncryptionKeyPromoted:
		if rolledOut() {
			st.Phase = kv1.EncryptionRewriting
			step = fmt.Sprintf("every API server writes with key %s: rewriting every Secret with it", st.NewKeyName)
		}
	case kv1.EncryptionOldKeyRemoved:
		if rolledOut() {
			step = fmt.Sprintf("every API server runs with key %s alone: rotation from %s done", st.NewKeyName, keyText(st.KeyName))
			st.Phase, st.KeyName, st.NewKeyName, st.LastRotationTime = kv1.EncryptionIdle, st.NewKeyName, "", &in.now
		}
	}
	data, hash, err := encryptionData(desiredKeys(st, pool))
	if err != nil {
		return encryptionPlan{}, err
	}
	return encryptionPlan{state: st, data: data, hash: hash, step: step}, nil
}

// requiredKeys are the keys values may be written with in a phase: they
// must be in the Secret.
func requiredKeys(st kv1.TenantEncryptionStatus) []string {
	var names []string
	switch st.Phase {
	case kv1.EncryptionIdle, kv1.EncryptionKeyAdded:
		names = []string{st.KeyName}
	case kv1.EncryptionKeyPromoted, kv1.EncryptionRewriting:
		names = []string{st.KeyName, st.NewKeyName}
	case kv1.EncryptionOldKeyRemoved:
		names = []string{st.NewKeyName}
	}
	return slices.DeleteFunc(names, func(n string) bool { return n == "" })
}

// desiredKeys are the keys the Secret holds in a phase, the writing one
// first; an empty KeyName is plaintext.
func desiredKeys(st kv1.TenantEncryptionStatus, pool map[string]cp.EncryptionKey) cp.EncryptionKeys {
	key := func(name string) *cp.EncryptionKey {
		if k, ok := pool[name]; ok {
			return &k
		}
		return nil
	}
	var keys cp.EncryptionKeys
	switch st.Phase {
	case kv1.EncryptionKeyAdded:
		keys.Write = key(st.KeyName)
		if k := key(st.NewKeyName); k != nil {
			keys.Read = []cp.EncryptionKey{*k}
		}
	case kv1.EncryptionKeyPromoted, kv1.EncryptionRewriting:
		keys.Write = key(st.NewKeyName)
		if k := key(st.KeyName); k != nil {
			keys.Read = []cp.EncryptionKey{*k}
		}
	case kv1.EncryptionOldKeyRemoved:
		keys.Write = key(st.NewKeyName)
	default:
		keys.Write = key(st.KeyName)
	}
	return keys
}

// encryptionData is the Secret's data for keys and its hash.
func encryptionData(keys cp.EncryptionKeys) (map[string][]byte, string, error) {
	cfg, err := cp.RenderEncryptionConfig(keys)
	if err != nil {
		return nil, "", err
	}
	data := map[string][]byte{cp.FileEncryptionConfig: cfg}
	return data, objects.HashData(data), nil
}

func keyText(name string) string {
	if name == "" {
		return "plaintext"
	}
	return "key " + name
}

// encryptionCondition is SecretsEncrypted for a status.
func encryptionCondition(st kv1.TenantEncryptionStatus) (ok bool, reason, message string) {
	if st.Phase == kv1.EncryptionIdle && st.KeyName != "" {
		return true, kv1.ReasonEncryptionKeyCurrent, fmt.Sprintf("every Secret is stored encrypted with %s key %s", st.Provider, st.KeyName)
	}
	what := map[kv1.EncryptionPhase]string{
		kv1.EncryptionKeyAdded:      "key %[2]s added as a read key; waiting until every API server can read it",
		kv1.EncryptionKeyPromoted:   "key %[2]s writes, %[1]s still reads; waiting until every API server writes with it",
		kv1.EncryptionRewriting:     "every API server writes with key %[2]s; rewriting every Secret with it",
		kv1.EncryptionOldKeyRemoved: "every Secret is written with key %[2]s; %[1]s leaves the configuration once every API server runs without it",
	}[st.Phase]
	if what == "" {
		return false, kv1.ReasonEncryptingSecrets, "the first key is not in place yet"
	}
	msg := fmt.Sprintf(what, keyText(st.KeyName), st.NewKeyName)
	if st.KeyName == "" {
		return false, kv1.ReasonEncryptingSecrets, "Secrets written before encryption are plaintext until rewritten: " + msg
	}
	return true, kv1.ReasonRotatingEncryptionKey, fmt.Sprintf("rotating from key %s to key %s: %s", st.KeyName, st.NewKeyName, msg)
}

// reconcileEncryption keeps the tenant's encryption Secret in the shape
// its phase asks for and moves a rotation on by a step when every API
// server runs the step before. It never stops the reconcile, except for a
// key that went missing.
func (r *Reconciler) reconcileEncryption(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	name := cp.EncryptionSecretName(tc.Name)
	// Read past the cache: a stale miss would mint a key over the one
	// the datastore's values are encrypted with.
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: name}, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	in := encryptionInput{exists: err == nil, requested: tc.Annotations[kv1.AnnotationEncryptionKeyRotation], now: metav1.NewTime(s.now)}
	if in.exists {
		if in.stored, err = cp.ParseEncryptionConfig(secret.Data[cp.FileEncryptionConfig]); err != nil {
			s.fail(kv1.ConditionSecretsEncrypted, kv1.ReasonEncryptionKeyMissing, fmt.Sprintf("Secret %s: %v", name, err))
			return ctrl.Result{}, fmt.Errorf("Secret %s: %w", name, err)
		}
	}
	st := tc.Status.Encryption
	if st.Phase == "" && !in.exists {
		if in.fresh, err = r.neverRan(ctx, tc); err != nil {
			return ctrl.Result{}, err
		}
	}
	if in.running, err = r.runningEncryption(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	plan, err := planEncryption(st, in, name, cp.NewEncryptionKey)
	var missing errEncryptionKeyMissing
	if errors.As(err, &missing) {
		s.fail(kv1.ConditionSecretsEncrypted, kv1.ReasonEncryptionKeyMissing, err.Error())
		return ctrl.Result{RequeueAfter: encryptionKeyMissingRetry}, nil
	}
	if err != nil {
		return ctrl.Result{}, err
	}
	if !in.exists || !objects.SameData(secret.Data, plan.data) {
		if err := r.apply(ctx, tc, &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: tc.Namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       plan.data,
		}); err != nil {
			return ctrl.Result{}, fmt.Errorf("apply encryption Secret: %w", err)
		}
	}
	// Status names the keys only once the Secret holds them.
	tc.Status.Encryption = plan.state
	s.encryption.hash = plan.hash
	if plan.step != "" {
		ctrl.LoggerFrom(ctx).Info("encryption key", "phase", plan.state.Phase, "key", plan.state.KeyName, "newKey", plan.state.NewKeyName, "step", plan.step)
		r.event(tc, corev1.EventTypeNormal, kv1.ReasonEncryptionKeyRotation, string(plan.state.Phase), plan.step)
	}
	r.recordEncryption(s)
	return ctrl.Result{}, nil
}

func (r *Reconciler) recordEncryption(s *scope) {
	if ok, reason, message := encryptionCondition(s.tc.Status.Encryption); ok {
		s.succeed(kv1.ConditionSecretsEncrypted, reason, message)
	} else {
		s.fail(kv1.ConditionSecretsEncrypted, reason, message)
	}
}

// neverRan says whether no API server of the tenant ever ran: no version
// in status and no Deployment (read past the cache).
func (r *Reconciler) neverRan(ctx context.Context, tc *kv1.TenantCluster) (bool, error) {
	if tc.Status.Version != "" {
		return false, nil
	}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: cp.DeploymentName(tc.Name)}, &appsv1.Deployment{})
	if apierrors.IsNotFound(err) {
		return true, nil
	}
	return false, client.IgnoreNotFound(err)
}

// runningEncryption is the hash of the encryption configuration every
// API server runs: the Deployment's when its rollout is complete and no
// control-plane pod, terminating ones included, carries another; empty
// otherwise.
func (r *Reconciler) runningEncryption(ctx context.Context, tc *kv1.TenantCluster) (string, error) {
	dep := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: cp.DeploymentName(tc.Name)}, dep); err != nil {
		return "", client.IgnoreNotFound(err)
	}
	return rolledOutHash(dep, func() ([]corev1.Pod, error) {
		var pods corev1.PodList
		err := r.Client.List(ctx, &pods, client.InNamespace(tc.Namespace), client.MatchingLabels(cp.Labels(tc.Name)))
		return pods.Items, err
	})
}

// rolledOutHash is the encryption hash of dep's pod template once every
// replica runs it; pods lists the control-plane pods.
func rolledOutHash(dep *appsv1.Deployment, pods func() ([]corev1.Pod, error)) (string, error) {
	want := int32(1)
	if dep.Spec.Replicas != nil {
		want = *dep.Spec.Replicas
	}
	st := dep.Status
	hash := dep.Spec.Template.Annotations[cp.AnnotationEncryptionHash]
	if hash == "" || st.ObservedGeneration < dep.Generation || st.Replicas != want || st.UpdatedReplicas != want || st.AvailableReplicas != want {
		return "", nil
	}
	list, err := pods()
	if err != nil {
		return "", err
	}
	for _, p := range list {
		if p.Annotations[cp.AnnotationEncryptionHash] != hash {
			return "", nil
		}
	}
	return hash, nil
}

// rewrites keeps each tenant's place in a rewrite that spans reconciles.
type rewrites struct {
	mu       sync.Mutex
	progress map[types.UID]rewriteProgress
}

type rewriteProgress struct {
	// key is the key being rewritten to; cont the list's continue token.
	key       string
	cont      string
	rewritten int64
}

func (w *rewrites) get(uid types.UID, key string) rewriteProgress {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p, ok := w.progress[uid]; ok && p.key == key {
		return p
	}
	return rewriteProgress{key: key}
}

func (w *rewrites) put(uid types.UID, p rewriteProgress, done bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.progress == nil {
		w.progress = map[types.UID]rewriteProgress{}
	}
	if done {
		delete(w.progress, uid)
	} else {
		w.progress[uid] = p
	}
}

// reconcileEncryptionRewrite rewrites every Secret of the tenant while a
// rotation is in its Rewriting phase, and asks to come back soon while a
// rotation waits for API servers to roll.
func (r *Reconciler) reconcileEncryptionRewrite(ctx context.Context, s *scope) (ctrl.Result, error) {
	st := &s.tc.Status.Encryption
	switch st.Phase {
	case kv1.EncryptionIdle, "":
		return ctrl.Result{}, nil
	case kv1.EncryptionRewriting:
	default:
		return ctrl.Result{RequeueAfter: encryptionRolloutRetry}, nil
	}
	t, err := r.tenantClient(s)
	if err != nil {
		return ctrl.Result{}, err
	}
	p := r.rewrites.get(s.tc.UID, st.NewKeyName)
	done, err := rewriteSecrets(ctx, t.clientset, &p, rewritePagesPerReconcile)
	if err != nil {
		r.rewrites.put(s.tc.UID, p, false)
		s.fail(kv1.ConditionSecretsEncrypted, kv1.ReasonRotatingEncryptionKey,
			fmt.Sprintf("rotating to key %s: rewriting Secrets through the tenant's API failed after %d: %v; retrying", st.NewKeyName, p.rewritten, err))
		return ctrl.Result{RequeueAfter: endpointRetry}, nil
	}
	r.rewrites.put(s.tc.UID, p, done)
	if !done {
		return ctrl.Result{RequeueAfter: rewriteContinueAfter}, nil
	}
	st.Phase, st.SecretsRewritten = kv1.EncryptionOldKeyRemoved, p.rewritten
	step := fmt.Sprintf("rewrote %d Secrets with key %s (the others were already written with it); dropping %s", p.rewritten, st.NewKeyName, keyText(st.KeyName))
	ctrl.LoggerFrom(ctx).Info("encryption key", "phase", st.Phase, "key", st.KeyName, "newKey", st.NewKeyName, "step", step)
	r.event(s.tc, corev1.EventTypeNormal, kv1.ReasonEncryptionKeyRotation, string(st.Phase), step)
	r.recordEncryption(s)
	// The next reconcile drops the old key from the Secret.
	return ctrl.Result{RequeueAfter: rewriteContinueAfter}, nil
}

// rewriteSecrets stores every Secret of the tenant again, page by page
// from p's continue token, at most pages pages: an update that changes
// nothing, which the API server writes only when the stored value is
// stale (not written with its first provider's key), exactly as `kubectl
// get secrets -A -o json | kubectl replace -f -`. A conflict means someone
// wrote the Secret meanwhile, with the new key; a Secret deleted meanwhile
// needs nothing. An expired continue token starts the list over. It
// reports whether the list is done.
func rewriteSecrets(ctx context.Context, cs kubernetes.Interface, p *rewriteProgress, pages int) (bool, error) {
	for range pages {
		list, err := cs.CoreV1().Secrets("").List(ctx, metav1.ListOptions{Limit: rewritePageSize, Continue: p.cont})
		if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
			p.cont = ""
			continue
		}
		if err != nil {
			return false, fmt.Errorf("list Secrets: %w", err)
		}
		for i := range list.Items {
			sec := &list.Items[i]
			got, err := cs.CoreV1().Secrets(sec.Namespace).Update(ctx, sec, metav1.UpdateOptions{})
			switch {
			case apierrors.IsConflict(err) || apierrors.IsNotFound(err):
			case err != nil:
				return false, fmt.Errorf("rewrite Secret %s/%s: %w", sec.Namespace, sec.Name, err)
			case got.ResourceVersion != sec.ResourceVersion:
				p.rewritten++
			}
		}
		p.cont = list.Continue
		if p.cont == "" {
			return true, nil
		}
	}
	return false, nil
}
