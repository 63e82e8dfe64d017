package tenantcluster

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/metrics"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/pki"
)

// A CA rotation with overlap, in two requests (annotation
// kubinception.dev/ca-rotation):
//
//   - start: a new cluster CA, front-proxy CA and service-account key join
//     the old ones in the PKI Secret. Everything that verifies trusts both
//     (ca.crt and front-proxy-ca.crt are bundles, sa.pub holds both public
//     keys); everything the control plane presents to itself moves to the
//     new CA, and the controller manager signs kubelet certificates with
//     it. What machines outside the admin cluster verify (the API server's
//     serving certificate, its client certificate to kubelets) stays with
//     the old CA, so a node or kubeconfig that trusts only the old CA keeps
//     working. Nodes move: they get the bundle and new-CA certificates
//     (kubinception node rotate-ca), without re-joining.
//   - complete: once every node holds a client certificate of the new CA,
//     the old CAs and key leave the Secret; the serving certificates move
//     to the new CA, and a certificate of the old CA is refused.
//
// The PKI Secret is the record of the phase: it holds ca-previous.crt
// exactly while the rotation overlaps, and it is written before anything
// acts on it, so an operator that stops mid-phase resumes where it was.

// caAction is what the certificates phase does to the CAs this time.
type caAction int

const (
	caKeep caAction = iota
	caStart
	caComplete
)

// caPlan is the certificates phase's decision on the CA rotation.
type caPlan struct {
	action caAction
	// wait, when set, says why a requested step waits.
	wait string
}

// planCARotation decides from the request (the annotation's value), the
// rotation's status and whether the PKI Secret holds a previous CA
// (overlap) what to do: start only from no rotation or a completed one,
// complete only a prepared one whose nodes have all moved (or forced).
func planCARotation(requested string, st *kv1.CARotationStatus, overlap bool) caPlan {
	phase := kv1.CARotationPhase("")
	if st != nil {
		phase = st.Phase
	}
	switch requested {
	case kv1.CARotationStart:
		if overlap {
			return caPlan{}
		}
		if phase == kv1.CARotationCompleting {
			return caPlan{wait: "the previous rotation is still completing"}
		}
		return caPlan{action: caStart}
	case kv1.CARotationComplete, kv1.CARotationForceComplete:
		if !overlap {
			return caPlan{}
		}
		if phase != kv1.CARotationPrepared {
			return caPlan{wait: "complete waits until the control plane trusts both CAs (phase Prepared)"}
		}
		if requested == kv1.CARotationComplete && len(st.PendingNodes) > 0 {
			return caPlan{wait: pendingNodesMessage(st.PendingNodes)}
		}
		return caPlan{action: caComplete}
	case "":
		return caPlan{}
	}
	return caPlan{wait: fmt.Sprintf("annotation %s=%q is none of %s, %s, %s", kv1.AnnotationCARotation, requested, kv1.CARotationStart, kv1.CARotationComplete, kv1.CARotationForceComplete)}
}

// pendingNodesMessage names the nodes complete waits for.
func pendingNodesMessage(nodes []string) string {
	return fmt.Sprintf("complete waits for %d node(s) still on a client certificate of the old CA: %s; move them (kubinception node rotate-ca, or the steps in docs/operations.md) or force it (kubinception rotate ca complete --force cuts them off)",
		len(nodes), strings.Join(nodes, ", "))
}

// pkiCAs are the CAs and service-account keys of a tenant: the current
// ones, and the previous ones while a rotation overlaps.
type pkiCAs struct {
	ca, previous          *pki.KeyPair
	front                 *pki.KeyPair
	frontPrevious         []byte
	saKey, saPub, saPrior []byte
}

// desiredCAs reads the CAs and keys from the PKI Secret's data (old),
// mints the first ones, and starts or completes a rotation as action says.
func desiredCAs(old map[string][]byte, action caAction, name string, now time.Time, validity time.Duration) (pkiCAs, error) {
	var c pkiCAs
	var err error
	if c.ca, err = keepOrNewCA(firstPEM(old[cp.FileCA]), old[cp.FileCAKey], name+"-ca", now, validity); err != nil {
		return c, err
	}
	if c.front, err = keepOrNewCA(firstPEM(old[cp.FileFrontProxyCA]), old[cp.FileFrontProxyCAKey], name+"-front-proxy-ca", now, validity); err != nil {
		return c, err
	}
	if len(old[cp.FileCAPrevious]) > 0 {
		if c.previous, err = pki.ParseKeyPair(old[cp.FileCAPrevious], old[cp.FileCAPreviousKey]); err != nil {
			return c, fmt.Errorf("previous CA in the PKI Secret: %w", err)
		}
		c.frontPrevious = old[cp.FileFrontProxyCAPrevious]
		c.saPrior = old[cp.FileSAPubPrevious]
	}
	if len(old[cp.FileSAKey]) > 0 && len(old[cp.FileSAPub]) > 0 {
		c.saKey, c.saPub = old[cp.FileSAKey], firstPEM(old[cp.FileSAPub])
	} else if c.saKey, c.saPub, err = pki.NewSigningKey(); err != nil {
		return c, err
	}
	switch action {
	case caStart:
		c.previous, c.frontPrevious, c.saPrior = c.ca, c.front.CertPEM, c.saPub
		if c.ca, err = pki.NewCAFor(name+"-ca", now, validity); err != nil {
			return c, err
		}
		if c.front, err = pki.NewCAFor(name+"-front-proxy-ca", now, validity); err != nil {
			return c, err
		}
		if c.saKey, c.saPub, err = pki.NewSigningKey(); err != nil {
			return c, err
		}
	case caComplete:
		c.previous, c.frontPrevious, c.saPrior = nil, nil, nil
	}
	return c, nil
}

// put writes the CAs into the PKI Secret's data: the bundles (current
// first, so the first certificate is always the one that signs), the
// current CA alone, and the previous pairs while the rotation overlaps.
func (c pkiCAs) put(data map[string][]byte) {
	data[cp.FileCA], data[cp.FileCAKey], data[cp.FileCASigning] = c.ca.CertPEM, c.ca.KeyPEM, c.ca.CertPEM
	data[cp.FileFrontProxyCA], data[cp.FileFrontProxyCAKey] = c.front.CertPEM, c.front.KeyPEM
	data[cp.FileSAKey], data[cp.FileSAPub] = c.saKey, c.saPub
	if c.previous != nil {
		data[cp.FileCA] = bundle(c.ca.CertPEM, c.previous.CertPEM)
		data[cp.FileCAPrevious], data[cp.FileCAPreviousKey] = c.previous.CertPEM, c.previous.KeyPEM
		if len(c.frontPrevious) > 0 {
			data[cp.FileFrontProxyCA] = bundle(c.front.CertPEM, c.frontPrevious)
			data[cp.FileFrontProxyCAPrevious] = c.frontPrevious
		}
		if len(c.saPrior) > 0 {
			data[cp.FileSAPub] = bundle(c.saPub, c.saPrior)
			data[cp.FileSAPubPrevious] = c.saPrior
		}
	}
}

// bundle concatenates PEM blocks, each ending in a newline.
func bundle(pems ...[]byte) []byte {
	var b bytes.Buffer
	for _, p := range pems {
		b.Write(bytes.TrimSpace(p))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// firstPEM is the first PEM block of data, re-encoded; data itself when
// it holds none (so that errors name what was there).
func firstPEM(data []byte) []byte {
	b, _ := pem.Decode(data)
	if b == nil {
		return data
	}
	return pem.EncodeToMemory(b)
}

// recordCARotation brings status.certificates.caRotation in line with the
// PKI Secret just written (overlap: it holds a previous CA) and says what
// a request waits for: a Secret with a previous CA is Preparing until the
// control plane runs it, one without after an overlap is Completing.
func (r *Reconciler) recordCARotation(s *scope, plan caPlan, overlap bool) {
	tc := s.tc
	st := tc.Status.Certificates.CARotation
	phase := kv1.CARotationPhase("")
	if st != nil {
		phase = st.Phase
	}
	switch {
	case overlap && phase != kv1.CARotationPreparing && phase != kv1.CARotationPrepared:
		tc.Status.Certificates.CARotation = &kv1.CARotationStatus{}
		r.caTransition(s, kv1.CARotationPreparing, "new cluster CA, front-proxy CA and service-account key minted beside the old ones; the control plane rolls to trust both")
	case !overlap && (phase == kv1.CARotationPreparing || phase == kv1.CARotationPrepared):
		forced := ""
		if len(st.PendingNodes) > 0 {
			forced = " (forced: " + strings.Join(st.PendingNodes, ", ") + " still on the old CA are cut off)"
		}
		r.caTransition(s, kv1.CARotationCompleting, "old CAs and service-account key removed; the control plane rolls to trust the new ones alone"+forced)
	}
	st = tc.Status.Certificates.CARotation
	if st == nil {
		return
	}
	exportCARotationPhase(tc)
	if plan.wait != "" {
		if st.Message != plan.wait && strings.HasPrefix(plan.wait, "complete waits for") {
			r.event(tc, corev1.EventTypeWarning, kv1.ReasonCARotationWaiting, "CompleteCARotation", plan.wait)
		}
		st.Message = plan.wait
	}
}

// caTransition moves the rotation to phase at the reconcile's time, with
// an Event and the phase's metrics.
func (r *Reconciler) caTransition(s *scope, phase kv1.CARotationPhase, message string) {
	tc := s.tc
	st := tc.Status.Certificates.CARotation
	now := metav1.NewTime(s.now)
	prev, since := st.Phase, st.LastTransitionTime
	st.Phase, st.LastTransitionTime, st.Message = phase, &now, message
	switch phase {
	case kv1.CARotationPreparing:
		st.PreparingTime = &now
	case kv1.CARotationPrepared:
		st.PreparedTime = &now
	case kv1.CARotationCompleting:
		st.CompletingTime = &now
	case kv1.CARotationCompleted:
		st.CompletedTime = &now
		st.PendingNodes = nil
	}
	if prev != "" && since != nil {
		caRotationPhaseSeconds.WithLabelValues(string(prev)).Observe(s.now.Sub(since.Time).Seconds())
	}
	exportCARotationPhase(tc)
	r.event(tc, corev1.EventTypeNormal, kv1.ReasonCARotation, string(phase), message)
}

// reconcileCARotation runs once the control plane has rolled to the PKI
// Secret and the tenant's bootstrap objects (cluster-info, the tunnel
// agent's trust) carry its bundle: a Preparing rotation is then Prepared,
// a Completing one Completed. While it is Prepared it follows which nodes
// have moved to the new CA.
func (r *Reconciler) reconcileCARotation(ctx context.Context, s *scope) (ctrl.Result, error) {
	st := s.tc.Status.Certificates.CARotation
	if st == nil {
		return ctrl.Result{}, nil
	}
	switch st.Phase {
	case kv1.CARotationCompleting:
		r.caTransition(s, kv1.CARotationCompleted, "the old CAs and service-account key are trusted nowhere; certificates they issued are refused")
		return ctrl.Result{}, nil
	case kv1.CARotationPreparing, kv1.CARotationPrepared:
	default:
		return ctrl.Result{}, nil
	}
	t, err := r.tenantClient(s)
	if err != nil {
		return ctrl.Result{}, err
	}
	nodes, err := t.clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("list nodes: %w", err)
	}
	csrs, err := t.clientset.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: "spec.signerName=" + certv1.KubeAPIServerClientKubeletSignerName})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("list kubelet client certificate requests: %w", err)
	}
	ca, err := parseCert(s.pki[cp.FileCASigning])
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("current CA: %w", err)
	}
	var names []string
	for _, n := range nodes.Items {
		names = append(names, n.Name)
	}
	st.MovedNodes, st.PendingNodes = movedNodes(ca, csrs.Items, names, st.MovedNodes)
	if st.Phase == kv1.CARotationPreparing {
		ctrl.LoggerFrom(ctx).Info("CA rotation prepared", "pendingNodes", st.PendingNodes)
		r.caTransition(s, kv1.CARotationPrepared, "every API server trusts both CAs; cluster-info and kube-root-ca.crt carry both; kubelet certificates come from the new CA")
	}
	requested := s.tc.Annotations[kv1.AnnotationCARotation]
	completing := requested == kv1.CARotationComplete || requested == kv1.CARotationForceComplete
	switch {
	case len(st.PendingNodes) == 0:
		st.Message = "every node holds a client certificate of the new CA: move kubeconfigs and workloads that read the CA once, then complete"
	case requested == kv1.CARotationComplete:
		st.Message = pendingNodesMessage(st.PendingNodes)
	default:
		st.Message = fmt.Sprintf("%d node(s) still on a client certificate of the old CA: %s", len(st.PendingNodes), strings.Join(st.PendingNodes, ", "))
	}
	if completing && (len(st.PendingNodes) == 0 || requested == kv1.CARotationForceComplete) {
		// The certificates phase completes it on the next pass, with
		// the nodes just counted.
		return ctrl.Result{RequeueAfter: time.Second}, nil
	}
	return ctrl.Result{}, nil
}

// movedNodes adds to moved the nodes that an issued kubelet client
// certificate request shows holding a certificate of ca (a node's
// requests are kept an hour; moved keeps what earlier passes saw) and
// returns them with the nodes not yet seen, both sorted.
func movedNodes(ca *x509.Certificate, csrs []certv1.CertificateSigningRequest, nodes, moved []string) (seen, pending []string) {
	set := map[string]bool{}
	for _, n := range moved {
		set[n] = true
	}
	for i := range csrs {
		cert, err := parseCert(csrs[i].Status.Certificate)
		if err != nil || cert.CheckSignatureFrom(ca) != nil {
			continue
		}
		if name, ok := strings.CutPrefix(cert.Subject.CommonName, "system:node:"); ok {
			set[name] = true
		}
	}
	for n := range set {
		seen = append(seen, n)
	}
	sort.Strings(seen)
	for _, n := range nodes {
		if !set[n] {
			pending = append(pending, n)
		}
	}
	sort.Strings(pending)
	return seen, slices.Clip(pending)
}

// Metrics of CA rotations: the phase each tenant is in, and how long
// each phase lasted (Preparing: the control plane's roll; Prepared: the
// nodes' and kubeconfigs' move; Completing: the last roll).
var (
	caRotationPhase = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "kubinception_tenant_ca_rotation_phase",
		Help: "1 for the phase a tenant's CA rotation is in (Preparing, Prepared, Completing, Completed), 0 for the others.",
	}, []string{"namespace", "tenant", "phase"})
	caRotationPhaseSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "kubinception_tenant_ca_rotation_phase_duration_seconds",
		Help:    "How long a tenant's CA rotation stayed in a phase.",
		Buckets: prometheus.ExponentialBuckets(5, 2, 12),
	}, []string{"phase"})
)

func init() { metrics.Registry.MustRegister(caRotationPhase, caRotationPhaseSeconds) }

// exportCARotationPhase sets the phase gauge from status, at every
// reconcile, so a restarted operator exports it too.
func exportCARotationPhase(tc *kv1.TenantCluster) {
	st := tc.Status.Certificates.CARotation
	if st == nil {
		return
	}
	for _, p := range []kv1.CARotationPhase{kv1.CARotationPreparing, kv1.CARotationPrepared, kv1.CARotationCompleting, kv1.CARotationCompleted} {
		v := 0.0
		if p == st.Phase {
			v = 1
		}
		caRotationPhase.WithLabelValues(tc.Namespace, tc.Name, string(p)).Set(v)
	}
}

// forgetCARotation drops a deleted tenant's series.
func forgetCARotation(tc *kv1.TenantCluster) {
	caRotationPhase.DeletePartialMatch(prometheus.Labels{"namespace": tc.Namespace, "tenant": tc.Name})
}
