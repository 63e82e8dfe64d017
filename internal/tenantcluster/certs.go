package tenantcluster

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/pki"
	"kubinception.dev/kubinception/internal/tunnel"
)

// Client certificates kept in the PKI Secret beside the kubeconfigs built
// from them, so a kubeconfig is rebuilt only when its certificate changes.
// The admin client is the operator's own credential for the tenant
// (system:masters, never handed out): revoking customer credentials must
// not cut off the operator that carries out the revocation.
const (
	fileCMClient    = "controller-manager-client"
	fileSchedClient = "scheduler-client"
	fileAdminClient = "admin-client"
	adminUserName   = "kubernetes-admin"
	adminGroup      = "system:masters"
)

// Keys of the customer kubeconfig Secret: the kubeconfig, and the
// certificate and key it embeds, kept so the certificate is reissued only
// when its generation or the CA changes or it nears expiry.
const (
	keyCustomerKubeconfig = "kubeconfig"
	keyCustomerCert       = "tls.crt"
	keyCustomerKey        = "tls.key"
)

// reconcileCertificates keeps the tenant's PKI Secret complete: one CA and
// one front-proxy CA per tenant, a certificate per component, the
// service-account key, the datastore client certificate (common name =
// the tenant's etcd user) and the kubeconfigs. Certificates that still
// match their spec are kept; the rest are reissued.
func (r *Reconciler) reconcileCertificates(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	// Read past the cache: a stale miss would mint a second CA.
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: cp.PKISecretName(tc.Name)}, secret)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	old := secret.Data
	forced := rotationRequested(tc)
	ca := planCARotation(tc.Annotations[kv1.AnnotationCARotation], tc.Status.Certificates.CARotation, len(old[cp.FileCAPrevious]) > 0)
	data, err := r.desiredPKI(s, old, forced, ca.action)
	if err != nil {
		s.fail(kv1.ConditionCertificatesReady, kv1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	if !objects.SameData(old, data) {
		var changed []string
		for k := range data {
			if string(old[k]) != string(data[k]) {
				changed = append(changed, k)
			}
		}
		sort.Strings(changed)
		ctrl.LoggerFrom(ctx).Info("writing PKI Secret", "changed", changed)
		if len(old) > 0 {
			why := "renewed before expiry or changed"
			if forced {
				why = "rotation " + tc.Annotations[kv1.AnnotationCertificateRotation] + " requested"
			}
			r.event(tc, corev1.EventTypeNormal, kv1.ReasonCertificatesRotated, "RotateCertificates", "reissued "+strings.Join(changed, ", ")+" ("+why+")")
			now := metav1.NewTime(s.now)
			tc.Status.Certificates.LastRotationTime = &now
		}
		if err := r.apply(ctx, tc, &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: cp.PKISecretName(tc.Name), Namespace: tc.Namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       data,
		}); err != nil {
			return ctrl.Result{}, fmt.Errorf("apply PKI Secret: %w", err)
		}
	}
	s.pki, s.pkiHash = data, objects.HashData(data)
	r.recordCARotation(s, ca, len(data[cp.FileCAPrevious]) > 0)

	gen, err := kubeconfig.ParseGeneration(tc.Annotations, kubeconfig.AnnotationCustomerGeneration)
	if err != nil {
		s.fail(kv1.ConditionCertificatesReady, kv1.ReasonInvalidSpec, err.Error())
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	adminSecret := &corev1.Secret{}
	err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: cp.AdminKubeconfigSecret(tc.Name)}, adminSecret)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	oldCustomer := adminSecret.Data
	if forced {
		oldCustomer = nil
	}
	customer, err := r.customerKubeconfig(s, data, gen, oldCustomer)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !objects.SameData(adminSecret.Data, customer) {
		if err := r.apply(ctx, tc, &corev1.Secret{
			TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
			ObjectMeta: metav1.ObjectMeta{Name: cp.AdminKubeconfigSecret(tc.Name), Namespace: tc.Namespace},
			Type:       corev1.SecretTypeOpaque,
			Data:       customer,
		}); err != nil {
			return ctrl.Result{}, fmt.Errorf("apply admin kubeconfig Secret: %w", err)
		}
	}
	tc.Status.AdminKubeconfigSecret = cp.AdminKubeconfigSecret(tc.Name)
	if forced {
		tc.Status.Certificates.ObservedRotation = tc.Annotations[kv1.AnnotationCertificateRotation]
	}
	reason, message, err := certificatesState(s.now, &tc.Status.Certificates, data, customer)
	if err != nil {
		return ctrl.Result{}, err
	}
	recordCertificateTimes(tc)
	if reason != kv1.ReasonCertificatesIssued {
		// Said once, when it becomes true, as a Warning: the CA is the
		// one thing the operator does not replace on its own.
		if c := meta.FindStatusCondition(tc.Status.Conditions, kv1.ConditionCertificatesReady); c == nil || c.Reason != reason {
			r.event(tc, corev1.EventTypeWarning, reason, "CheckCertificateAuthority", message)
		}
	}
	if reason == kv1.ReasonCertificateAuthorityExpired {
		s.fail(kv1.ConditionCertificatesReady, reason, message)
		return ctrl.Result{}, nil
	}
	s.succeed(kv1.ConditionCertificatesReady, reason, message)
	return ctrl.Result{}, nil
}

// rotationRequested says whether the tenant asks for a leaf rotation it
// has not had yet.
func rotationRequested(tc *kv1.TenantCluster) bool {
	v := tc.Annotations[kv1.AnnotationCertificateRotation]
	return v != "" && v != tc.Status.Certificates.ObservedRotation
}

// leafValidity and caValidity are the lifetimes the tenant asks for.
func leafValidity(tc *kv1.TenantCluster) time.Duration {
	if v := tc.Spec.Certificates.Validity; v != nil && v.Duration > 0 {
		return v.Duration
	}
	return pki.CertValidity
}

func caValidity(tc *kv1.TenantCluster) time.Duration {
	if v := tc.Spec.Certificates.CAValidity; v != nil && v.Duration > 0 {
		return v.Duration
	}
	return pki.CAValidity
}

// certificatesState records in st when the tenant's leaf certificates
// expire and are next renewed and when its CA expires, and returns
// CertificatesReady's reason and message: current, or the CA two thirds
// into its life (a new CA is due), or the CA expired.
func certificatesState(now time.Time, st *kv1.TenantCertificatesStatus, data, customer map[string][]byte) (reason, message string, err error) {
	var first, renew time.Time
	for k, v := range data {
		if !strings.HasSuffix(k, ".crt") || isCAFile(k) {
			continue
		}
		cert, err := parseCert(v)
		if err != nil {
			return "", "", fmt.Errorf("%s: %w", k, err)
		}
		if first.IsZero() || cert.NotAfter.Before(first) {
			first = cert.NotAfter
		}
		if at := pki.RenewalTime(cert); renew.IsZero() || at.Before(renew) {
			renew = at
		}
	}
	if cert, err := parseCert(customer[keyCustomerCert]); err == nil {
		if cert.NotAfter.Before(first) {
			first = cert.NotAfter
		}
		if at := pki.RenewalTime(cert); at.Before(renew) {
			renew = at
		}
	}
	ca, err := parseCert(data[cp.FileCA])
	if err != nil {
		return "", "", fmt.Errorf("tenant CA: %w", err)
	}
	notAfter, renewal, caNotAfter := metav1.NewTime(first), metav1.NewTime(renew), metav1.NewTime(ca.NotAfter)
	st.NotAfter, st.RenewalTime, st.CANotAfter = &notAfter, &renewal, &caNotAfter
	caDue := pki.RenewalTime(ca)
	if front, err := parseCert(data[cp.FileFrontProxyCA]); err == nil && pki.RenewalTime(front).Before(caDue) {
		caDue = pki.RenewalTime(front)
	}
	switch {
	case !now.Before(ca.NotAfter):
		return kv1.ReasonCertificateAuthorityExpired, fmt.Sprintf("the tenant CA expired at %s: nothing it issued verifies; the operator never replaces a CA on its own (a rotation with overlap needs the old CA valid: see docs/operations.md, Rotating a tenant's CAs)", ca.NotAfter.UTC().Format(time.RFC3339)), nil
	case !now.Before(caDue):
		return kv1.ReasonCertificateAuthorityExpiring, fmt.Sprintf("a tenant CA is two thirds into its life (the tenant CA expires at %s); the operator never replaces a CA on its own, since every joined node, kubeconfig and pod trusts it: rotate it with overlap before then (kubinception rotate ca NAME start, then complete; docs/operations.md, Rotating a tenant's CAs)", ca.NotAfter.UTC().Format(time.RFC3339)), nil
	}
	return kv1.ReasonCertificatesIssued, fmt.Sprintf("CA, component certificates, datastore client certificate and kubeconfigs are current; the first expires at %s and is renewed at %s",
		first.UTC().Format(time.RFC3339), renew.UTC().Format(time.RFC3339)), nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(b.Bytes)
}

// isCAFile says whether a file of the PKI Secret is a CA certificate or
// bundle rather than a leaf.
func isCAFile(k string) bool {
	switch k {
	case cp.FileCA, cp.FileCASigning, cp.FileCAPrevious, cp.FileFrontProxyCA, cp.FileFrontProxyCAPrevious, cp.FileDatastoreCA:
		return true
	}
	return false
}

// desiredPKI computes the PKI Secret's data from what it holds now; with
// forced every leaf certificate is issued anew; action starts or
// completes a CA rotation (caRotation.go).
func (r *Reconciler) desiredPKI(s *scope, old map[string][]byte, forced bool, action caAction) (map[string][]byte, error) {
	tc := s.tc
	now := s.now
	validity := leafValidity(tc)
	data := map[string][]byte{}
	cas, err := desiredCAs(old, action, tc.Name, now, caValidity(tc))
	if err != nil {
		return nil, err
	}
	cas.put(data)
	ca, front := cas.ca, cas.front
	// Certificates that machines and people outside the admin cluster
	// verify stay with the previous CA while a rotation overlaps: they
	// move to the new CA at complete, once everything trusts it.
	serving := ca
	if cas.previous != nil {
		serving = cas.previous
	}

	p := r.params(s)
	leaves := []struct {
		cert, key string
		ca        *pki.KeyPair
		spec      pki.Spec
	}{
		{cp.FileAPIServer, cp.FileAPIServerKey, serving, cp.APIServerSANs(p, s.exposure.serviceIP, tc.Spec.Exposure.Hostname, s.exposure.extraSANs(tc))},
		{cp.FileKubeletClient, cp.FileKubeletClientKey, serving, pki.Spec{CommonName: "kube-apiserver-kubelet-client", Organization: []string{adminGroup}, Client: true}},
		{cp.FileFrontProxyClient, cp.FileFrontProxyClientKey, front, pki.Spec{CommonName: "front-proxy-client", Client: true}},
		// Copied into the tenant for its nodes' tunnel agents; it names
		// a user without any permission in the tenant's API.
		{cp.FileTunnelAgent, cp.FileTunnelAgentKey, ca, pki.Spec{CommonName: tunnel.AgentCommonName, Client: true}},
		// The tenant's load balancers reach node ports through the
		// tunnel with it; it never leaves the admin cluster.
		{cp.FileTunnelClient, cp.FileTunnelClientKey, ca, pki.Spec{CommonName: tunnel.ClientCommonName, Client: true}},
		{cp.FileDatastoreClient, cp.FileDatastoreClientKey, s.etcd.gatewayCA, pki.Spec{CommonName: s.tenancy.User, Client: true}},
		{fileCMClient + ".crt", fileCMClient + ".key", ca, pki.Spec{CommonName: "system:kube-controller-manager", Client: true}},
		{fileSchedClient + ".crt", fileSchedClient + ".key", ca, pki.Spec{CommonName: "system:kube-scheduler", Client: true}},
		{fileAdminClient + ".crt", fileAdminClient + ".key", ca, pki.Spec{CommonName: adminUserName, Organization: []string{adminGroup}, Client: true}},
	}
	for _, l := range leaves {
		certPEM, keyPEM := old[l.cert], old[l.key]
		if forced {
			certPEM, keyPEM = nil, nil
		}
		kp, err := l.ca.KeepOrIssueFor(certPEM, keyPEM, l.spec, now, validity)
		if err != nil {
			return nil, fmt.Errorf("certificate %s: %w", l.cert, err)
		}
		put(data, l.cert, l.key, kp)
	}
	data[cp.FileDatastoreCA] = s.etcd.gatewayCA.CertPEM

	local := "https://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(int(s.exposure.port)))
	for _, kc := range []struct{ file, client, user string }{
		{cp.FileControllerManager, fileCMClient, "system:kube-controller-manager"},
		{cp.FileScheduler, fileSchedClient, "system:kube-scheduler"},
	} {
		b, err := kubeconfig.Render(kubeconfig.Config{ClusterName: tc.Name, Server: local, CAPEM: data[cp.FileCA],
			UserName: kc.user, CertPEM: data[kc.client+".crt"], KeyPEM: data[kc.client+".key"]})
		if err != nil {
			return nil, err
		}
		data[kc.file] = b
	}
	return data, nil
}

// customerKubeconfig is the content of the customer kubeconfig Secret: a
// customer credential of generation gen at the tenant's endpoint, named
// after the Secret in the tenant's audit log. It is a customer
// credential like those `kubinception kubeconfig` issues, revoked with
// them; it lives apart from the PKI Secret so that reissuing it never
// rolls the control plane.
func (r *Reconciler) customerKubeconfig(s *scope, data map[string][]byte, gen int, old map[string][]byte) (map[string][]byte, error) {
	ca, err := pki.ParseKeyPair(data[cp.FileCASigning], data[cp.FileCAKey])
	if err != nil {
		return nil, fmt.Errorf("tenant CA: %w", err)
	}
	user := kubeconfig.CustomerUser(gen, cp.AdminKubeconfigSecret(s.tc.Name))
	kp, err := ca.KeepOrIssueFor(old[keyCustomerCert], old[keyCustomerKey],
		pki.Spec{CommonName: user, Organization: []string{kubeconfig.CustomerGroup(gen)}, Client: true}, s.now, leafValidity(s.tc))
	if err != nil {
		return nil, fmt.Errorf("customer kubeconfig certificate: %w", err)
	}
	kc, err := kubeconfig.Render(kubeconfig.Config{ClusterName: s.tc.Name, Server: s.exposure.endpoint, CAPEM: data[cp.FileCA],
		UserName: user, CertPEM: kp.CertPEM, KeyPEM: kp.KeyPEM})
	if err != nil {
		return nil, err
	}
	return map[string][]byte{keyCustomerKubeconfig: kc, keyCustomerCert: kp.CertPEM, keyCustomerKey: kp.KeyPEM}, nil
}

// keepOrNewCA returns the CA held in certPEM and keyPEM, and a new CA
// valid for validity only when there is none. A CA is kept even when it
// nears or passes its expiry: every joined node trusts it, and replacing
// it would cut them all off; certificatesState warns instead.
func keepOrNewCA(certPEM, keyPEM []byte, commonName string, now time.Time, validity time.Duration) (*pki.KeyPair, error) {
	if len(certPEM) == 0 && len(keyPEM) == 0 {
		return pki.NewCAFor(commonName, now, validity)
	}
	kp, err := pki.ParseKeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA %s in the PKI Secret: %w (the operator does not replace a CA that nodes may trust; restore it from a backup)", commonName, err)
	}
	if !kp.Cert.IsCA {
		return nil, fmt.Errorf("CA %s in the PKI Secret is not a CA certificate (restore it from a backup)", commonName)
	}
	return kp, nil
}

func put(data map[string][]byte, cert, key string, kp *pki.KeyPair) {
	data[cert], data[key] = kp.CertPEM, kp.KeyPEM
}
