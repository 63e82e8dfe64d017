package tenantcluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"
	appsv1 "k8s.io/api/apps/v1"
	certv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crlog "sigs.k8s.io/controller-runtime/pkg/log"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/tenantbootstrap"
)

// readyResync is how often a Ready tenant is reconciled with nothing
// changed: its usage and quota in status, its nodes' versions. Everything
// that needs a prompt answer comes with an event instead (its objects in
// the admin cluster, its control-plane pods, its Services of type
// LoadBalancer, its kubelets' serving certificate requests). A periodic
// pass costs the tenant's API server, the datastore and the operator CPU
// on every tenant, busy or not: at 15 seconds it was the largest share of
// an idle tenant's cost.
const readyResync = time.Minute

// addonReapply is how often the addons are applied again though nothing
// in what they are made of changed: it brings back what a tenant user
// deleted or changed. A change of the tenant's spec, version or
// certificates applies them at once.
const addonReapply = 10 * time.Minute

// tenantClients caches one client per tenant and credential set.
type tenantClients struct {
	mu      sync.Mutex
	clients map[types.UID]tenantClient
}

type tenantClient struct {
	key       string
	c         client.Client
	clientset kubernetes.Interface
	// services follows the tenant's Services once the load-balancer
	// phase needs them.
	services *serviceWatch
	// csrs follows the tenant's kubelet serving certificate requests.
	csrs *csrWatch
	// addons are the hash of the addons last applied and when.
	addonsHash string
	addonsAt   time.Time
}

// tenantClient connects to the tenant's API server through its Service
// address inside the admin cluster, as the tenant's admin.
func (r *Reconciler) tenantClient(s *scope) (tenantClient, error) {
	host := "https://" + net.JoinHostPort(s.exposure.serviceIP, strconv.Itoa(cp.DefaultPort))
	key := host + "/" + s.pkiHash
	r.tenants.mu.Lock()
	defer r.tenants.mu.Unlock()
	if tc, ok := r.tenants.clients[s.tc.UID]; ok && tc.key == key {
		return tc, nil
	}
	rc := &rest.Config{
		Host:    host,
		Timeout: 15 * time.Second,
		QPS:     50, Burst: 100,
		Dial: r.dialControlPlane(s.tc.Namespace, s.tc.Name, net.JoinHostPort(s.exposure.serviceIP, strconv.Itoa(cp.DefaultPort))),
		// Each warning once per tenant, not at every apply: the API
		// server warns of the v1 Endpoints the bootstrap keeps (for the
		// kubernetes Service, which conformance requires) at each one.
		WarningHandlerWithContext: crlog.NewKubeAPIWarningLogger(crlog.KubeAPIWarningLoggerOptions{Deduplicate: true}),
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   s.pki[cp.FileCA],
			CertData: s.pki[fileAdminClient+".crt"],
			KeyData:  s.pki[fileAdminClient+".key"],
		},
	}
	c, err := client.New(rc, client.Options{Scheme: r.Client.Scheme()})
	if err != nil {
		return tenantClient{}, err
	}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		return tenantClient{}, err
	}
	if r.tenants.clients == nil {
		r.tenants.clients = map[types.UID]tenantClient{}
	}
	if old, ok := r.tenants.clients[s.tc.UID]; ok {
		old.stopWatches()
	}
	tc := tenantClient{key: key, c: c, clientset: cs}
	r.tenants.clients[s.tc.UID] = tc
	return tc, nil
}

// stopWatches stops the watches of the tenant made with this client.
func (t tenantClient) stopWatches() {
	if t.services != nil {
		t.services.close()
	}
	if t.csrs != nil {
		t.csrs.close()
	}
}

// addonsApplied says whether the addons of hash were applied less than
// addonReapply ago; markAddons records that they just were.
func (r *Reconciler) addonsApplied(uid types.UID, hash string, now time.Time) bool {
	r.tenants.mu.Lock()
	defer r.tenants.mu.Unlock()
	t, ok := r.tenants.clients[uid]
	return ok && t.addonsHash == hash && now.Sub(t.addonsAt) < addonReapply
}

func (r *Reconciler) markAddons(uid types.UID, key, hash string, now time.Time) {
	r.tenants.mu.Lock()
	defer r.tenants.mu.Unlock()
	if t, ok := r.tenants.clients[uid]; ok && t.key == key {
		t.addonsHash, t.addonsAt = hash, now
		r.tenants.clients[uid] = t
	}
}

// dialControlPlane dials the tenant's API server at a ready pod of its
// control plane, straight, and its Service address only when no pod is
// known to be ready. Through the Service the operator would wait for
// kube-proxy to program the new endpoint after the pod turned ready (a
// first connection refused, then the 5-second endpointRetry, on every
// create and wake); the pod's readiness is already watched. TLS still
// verifies the Service address the client asked for, which the API
// server's certificate covers.
func (r *Reconciler) dialControlPlane(namespace, name, serviceAddr string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == serviceAddr {
			var pods corev1.PodList
			if err := r.Client.List(ctx, &pods, client.InNamespace(namespace), client.MatchingLabels(cp.Labels(name))); err == nil {
				if target := readyAPIServer(pods.Items); target != "" {
					if c, err := d.DialContext(ctx, network, target); err == nil {
						return c, nil
					}
				}
			}
		}
		return d.DialContext(ctx, network, addr)
	}
}

// readyAPIServer is the address of a ready API server in a not
// terminating control-plane pod ("" when there is none). The API server's
// container is ready as soon as its startup probe passes, before the pod
// is (the kubelet then starts the pod's other containers).
func readyAPIServer(pods []corev1.Pod) string {
	for _, p := range pods {
		if p.Status.PodIP == "" || !p.DeletionTimestamp.IsZero() || !apiServerContainerReady(&p) {
			continue
		}
		for _, c := range append(append([]corev1.Container{}, p.Spec.InitContainers...), p.Spec.Containers...) {
			if c.Name != "kube-apiserver" {
				continue
			}
			for _, port := range c.Ports {
				if port.Name == "https" {
					return net.JoinHostPort(p.Status.PodIP, strconv.Itoa(int(port.ContainerPort)))
				}
			}
		}
	}
	return ""
}

// apiServerContainerReady says whether the pod's kube-apiserver container
// is ready.
func apiServerContainerReady(p *corev1.Pod) bool {
	for _, cs := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if cs.Name == "kube-apiserver" {
			return cs.Ready
		}
	}
	return false
}

// forgetTenant drops a deleted tenant's client.
func (r *Reconciler) forgetTenant(uid types.UID) {
	r.tenants.mu.Lock()
	defer r.tenants.mu.Unlock()
	if t, ok := r.tenants.clients[uid]; ok {
		t.stopWatches()
	}
	delete(r.tenants.clients, uid)
}

// reconcileBootstrap applies, inside the tenant, what joining nodes need
// and the enabled addons, removes disabled addons, and approves kubelet
// serving certificates whose names match their node.
func (r *Reconciler) reconcileBootstrap(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	t, err := r.tenantClient(s)
	if err != nil {
		return ctrl.Result{}, err
	}
	p := r.params(s)
	// The addons and the node configuration follow the version the
	// control plane runs (this phase runs only once it has rolled, or on a
	// first start once its API server is ready), so kube-proxy is never
	// newer than the API servers.
	version := s.runningVersion()
	p.Version = version
	objs, err := tenantbootstrap.Objects(tenantbootstrap.Params{
		Endpoint: tc.Status.Endpoint, CAPEM: s.pki[cp.FileCA], KubernetesVersion: version,
		APIServerAddress: p.AdvertiseAddress, APIServerPort: p.Port,
		ServiceCIDR: tc.Spec.Network.ServiceCIDR, PodCIDR: tc.Spec.Network.PodCIDR, ClusterDomain: tc.Spec.Network.ClusterDomain,
		DNSServiceIP:   tc.Spec.Network.DNSServiceIP,
		KubeProxyImage: p.Images().Component("kube-proxy"),
		CoreDNSImage:   p.Images().CoreDNS(),
		KubeProxy:      tc.Spec.Addons.KubeProxy.IsEnabled(),
		CoreDNS:        tc.Spec.Addons.CoreDNS.IsEnabled(),
		Tunnel:         tc.Spec.Addons.Tunnel.IsEnabled(),
		TunnelServer:   s.exposure.tunnel,
		TunnelImage:    r.Image,
		TunnelAgentPEM: s.pki[cp.FileTunnelAgent],
		TunnelKeyPEM:   s.pki[cp.FileTunnelAgentKey],
		NetworkPolicy:  tc.Spec.Addons.NetworkPolicy.IsEnabled(),
		CalicoImage:    p.Images().Calico(),
	})
	if err != nil {
		return ctrl.Result{}, err
	}
	enabled := map[string]bool{
		"kube-proxy": tc.Spec.Addons.KubeProxy.IsEnabled(), "coredns": tc.Spec.Addons.CoreDNS.IsEnabled(), "tunnel": tc.Spec.Addons.Tunnel.IsEnabled(),
		tenantbootstrap.NetworkPolicyAddon: tc.Spec.Addons.NetworkPolicy.IsEnabled(),
	}
	hash, err := addonsHash(objs, enabled)
	if err != nil {
		return ctrl.Result{}, err
	}
	if !r.addonsApplied(tc.UID, hash, s.now) {
		start := time.Now()
		if res, err := r.applyAddons(ctx, s, t, objs, enabled); err != nil || !res.IsZero() {
			return res, err
		}
		ctrl.LoggerFrom(ctx).Info("applied the node bootstrap and addons", "objects", len(objs), "took", time.Since(start).Round(time.Millisecond).String())
		r.markAddons(tc.UID, t.key, hash, s.now)
	} else if err := keepKubernetesEndpoints(ctx, t.c, objs); err != nil {
		return ctrl.Result{}, err
	}
	r.watchServingCSRs(tc, t)
	approved, err := approveServingCSRs(ctx, t.clientset, csrTenantNames(s, p))
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("approve kubelet serving certificates: %w", err)
	}
	if approved > 0 {
		ctrl.LoggerFrom(ctx).Info("approved kubelet serving certificates", "count", approved)
	}
	s.succeed(kv1.ConditionAddonsReady, kv1.ReasonAddonsApplied,
		"node bootstrap (cluster-info, RBAC, kubeadm and kubelet configuration) and enabled addons are in place")
	if upgrading(s) {
		s.record(kv1.ConditionUpgrading, upgradeState(tc.Spec.Version, tc.Status.Version, true, false, rollout{}))
		recordVersion(tc, false)
	}
	nodes, err := t.clientset.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("list nodes: %w", err)
	}
	skew, outside := kubeletSkew(version, nodes.Items)
	s.record(kv1.ConditionNodeVersionsSupported, skew)
	nodesOutsideSkew.WithLabelValues(tc.Namespace, tc.Name).Set(float64(outside))
	return ctrl.Result{}, nil
}

// addonsHash is the hash of what the addons are made of: the objects to
// apply and which addons are on.
func addonsHash(objs []client.Object, enabled map[string]bool) (string, error) {
	h := sha256.New()
	for _, obj := range objs {
		data, err := json.Marshal(obj)
		if err != nil {
			return "", fmt.Errorf("hash %s %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
		}
		h.Write(data)
	}
	data, _ := json.Marshal(enabled) // map keys are sorted
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// applyAddons applies the addons' objects inside the tenant and removes
// the disabled addons. Objects go up to applyParallelism at a time: they
// do not depend on one another at admission (their namespaces exist, RBAC
// bindings may name roles not yet written, workloads wait for their
// service accounts), and one after another a first start's 57 requests
// were most of its bootstrap. Custom resources follow, in the same pass,
// once the CRDs applied with them are established.
func (r *Reconciler) applyAddons(ctx context.Context, s *scope, t tenantClient, objs []client.Object, enabled map[string]bool) (ctrl.Result, error) {
	applied := appliedCRDs(ctx, t.c)
	crdGroups := map[string]bool{}
	for _, obj := range objs {
		if crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
			crdGroups[crd.Spec.Group] = true
		}
	}
	// The CRDs to apply go first, so that the API server establishes them
	// while the other objects are applied.
	var crds, first, custom []client.Object
	var newCRDs []string
	for _, obj := range objs {
		if crd, ok := obj.(*apiextensionsv1.CustomResourceDefinition); ok {
			if h := stampCRD(crd); h == "" || h != applied[crd.Name] {
				crds = append(crds, obj)
				newCRDs = append(newCRDs, crd.Name)
			}
			continue
		}
		if crdGroups[obj.GetObjectKind().GroupVersionKind().Group] {
			custom = append(custom, obj)
		} else {
			first = append(first, obj)
		}
	}
	first = append(crds, first...)
	if err := applyAll(ctx, t.c, first); err != nil {
		s.fail(kv1.ConditionAddonsReady, kv1.ReasonTenantAPIUnreachable, err.Error()+"; retrying")
		return ctrl.Result{RequeueAfter: endpointRetry}, nil
	}
	if len(custom) > 0 {
		if err := waitEstablished(ctx, t.c, newCRDs); err != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("CustomResourceDefinitions not established yet", "error", err.Error())
		}
		if err := applyAll(ctx, t.c, custom); err != nil {
			if meta.IsNoMatchError(err) {
				// The API server serves a kind once its CRD is
				// established and its discovery says so.
				s.fail(kv1.ConditionAddonsReady, kv1.ReasonAddonsApplied,
					fmt.Sprintf("waiting for the tenant to serve the addons' custom resources (their CustomResourceDefinitions were just applied): %v", err))
				return ctrl.Result{RequeueAfter: crdRetry}, nil
			}
			s.fail(kv1.ConditionAddonsReady, kv1.ReasonTenantAPIUnreachable, err.Error()+"; retrying")
			return ctrl.Result{RequeueAfter: endpointRetry}, nil
		}
	}
	for addon, on := range enabled {
		if !on {
			if err := removeAddon(ctx, t.c, addon); err != nil {
				return ctrl.Result{}, fmt.Errorf("remove addon %s: %w", addon, err)
			}
		}
	}
	return ctrl.Result{}, nil
}

// applyParallelism is how many objects the bootstrap applies inside a
// tenant at a time.
const applyParallelism = 8

// applyAll server-side applies objs inside a tenant, applyParallelism at
// a time, and returns the first failure, naming its object.
func applyAll(ctx context.Context, c client.Client, objs []client.Object) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(applyParallelism)
	for _, obj := range objs {
		g.Go(func() error {
			//nolint:staticcheck // typed objects with server-side apply
			if err := c.Patch(ctx, obj, client.Apply, client.ForceOwnership, objects.FieldOwner); err != nil {
				return fmt.Errorf("cannot apply %s %s inside the tenant: %w", obj.GetObjectKind().GroupVersionKind().Kind, obj.GetName(), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// crdEstablishTimeout bounds the wait for CRDs just applied to be
// established: the API server establishes one well under a second.
const crdEstablishTimeout = 10 * time.Second

// waitEstablished waits until every CRD named is Established.
func waitEstablished(ctx context.Context, c client.Client, names []string) error {
	return wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, crdEstablishTimeout, true, func(ctx context.Context) (bool, error) {
		for _, name := range names {
			crd := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				return false, nil
			}
			if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
				return false, nil
			}
		}
		return true, nil
	})
}

// keepKubernetesEndpoints writes the kubernetes Service's Endpoints and
// EndpointSlice again when the Endpoints differ from what the bootstrap
// renders. Between two applies of the addons, something may erase them:
// an API server of an earlier release, stopping during the rollout away
// from it, removes its address as it leaves, and a tenant admin may
// delete them. Read at every pass (one GET a minute when idle), since
// pods reach the API server through them.
func keepKubernetesEndpoints(ctx context.Context, c client.Client, objs []client.Object) error {
	var want *corev1.Endpoints
	var write []client.Object
	for _, o := range objs {
		if o.GetNamespace() != metav1.NamespaceDefault || o.GetName() != "kubernetes" {
			continue
		}
		write = append(write, o)
		if e, ok := o.(*corev1.Endpoints); ok {
			want = e
		}
	}
	if want == nil {
		return nil
	}
	cur := &corev1.Endpoints{}
	err := c.Get(ctx, client.ObjectKeyFromObject(want), cur)
	if err == nil && equality.Semantic.DeepEqual(cur.Subsets, want.Subsets) {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read the kubernetes Service's Endpoints: %w", err)
	}
	for _, o := range write {
		//nolint:staticcheck // typed objects with server-side apply
		if err := c.Patch(ctx, o, client.Apply, client.ForceOwnership, objects.FieldOwner); err != nil {
			return fmt.Errorf("write the kubernetes Service's %s again: %w", o.GetObjectKind().GroupVersionKind().Kind, err)
		}
	}
	ctrl.LoggerFrom(ctx).Info("the kubernetes Service's endpoints had changed inside the tenant; written again", "had", cur.Subsets)
	return nil
}

// crdRetry is how soon a custom resource is applied again after its CRD:
// establishing a CRD takes the API server well under a second.
const crdRetry = time.Second

// annotationSpecHash records, on an object applied only when it changes
// (the addons' CRDs, which are large: 270 KB for Calico's), the hash of
// what was applied.
const annotationSpecHash = "kubinception.dev/spec-hash"

// stampCRD records on crd the hash of its content and returns it.
func stampCRD(crd *apiextensionsv1.CustomResourceDefinition) string {
	data, err := json.Marshal(crd.Spec)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	hash := hex.EncodeToString(sum[:8])
	if crd.Annotations == nil {
		crd.Annotations = map[string]string{}
	}
	crd.Annotations[annotationSpecHash] = hash
	return hash
}

// appliedCRDs maps the name of each CRD the operator applied in the tenant
// to the hash it was applied with, read as metadata in one list, so the
// periodic pass sends the large CRDs only when they change. A failed read
// maps nothing: everything is applied again.
func appliedCRDs(ctx context.Context, c client.Client) map[string]string {
	list := &metav1.PartialObjectMetadataList{}
	list.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinitionList"))
	if err := c.List(ctx, list, client.HasLabels{tenantbootstrap.ManagedLabel}); err != nil {
		return nil
	}
	out := map[string]string{}
	for _, m := range list.Items {
		if m.DeletionTimestamp == nil && m.Annotations[annotationSpecHash] != "" {
			out[m.Name] = m.Annotations[annotationSpecHash]
		}
	}
	return out
}

// removeAddon deletes every object of a switched-off addon.
func removeAddon(ctx context.Context, c client.Client, addon string) error {
	sel := client.MatchingLabels{tenantbootstrap.ManagedLabel: addon}
	for _, obj := range []client.Object{&appsv1.DaemonSet{}, &appsv1.Deployment{}, &corev1.Service{}, &corev1.ConfigMap{}, &corev1.ServiceAccount{}, &corev1.Secret{}} {
		if err := c.DeleteAllOf(ctx, obj, client.InNamespace("kube-system"), sel); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return nil
}

// approveServingCSRs decides pending kubelet serving certificate requests
// with the approval chain (policies.go): approved when the requester is
// the node the certificate names and every name is the node's own, denied
// with the policy's reason otherwise, left pending while the Node is not
// registered. It returns how many it approved.
func approveServingCSRs(ctx context.Context, cs kubernetes.Interface, names csrTenantInfo) (int, error) {
	log := ctrl.LoggerFrom(ctx)
	list, err := cs.CertificatesV1().CertificateSigningRequests().List(ctx, metav1.ListOptions{FieldSelector: "spec.signerName=" + certv1.KubeletServingSignerName})
	if err != nil {
		return 0, err
	}
	if len(list.Items) == 0 || allDecided(list.Items) {
		return 0, nil
	}
	// One list of Nodes per pass: the node itself and which addresses the
	// others report come from the same snapshot.
	nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, fmt.Errorf("list nodes: %w", err)
	}
	tenant := newCSRTenant(names.apiServerNames, names.clusterRanges, nodes.Items)
	getNode := func(_ context.Context, name string) (*corev1.Node, error) {
		for i := range nodes.Items {
			if nodes.Items[i].Name == name {
				return &nodes.Items[i], nil
			}
		}
		return nil, apierrors.NewNotFound(corev1.Resource("nodes"), name)
	}
	approved := 0
	for i := range list.Items {
		csr := &list.Items[i]
		if decided(csr) {
			continue
		}
		decision, reason, message, err := evaluateCSR(ctx, csr, tenant, getNode)
		if err != nil {
			return approved, fmt.Errorf("CSR %s: %w", csr.Name, err)
		}
		cond := certv1.CertificateSigningRequestCondition{Status: corev1.ConditionTrue, Reason: "Kubinception" + reason, Message: message, LastUpdateTime: metav1.Now()}
		switch decision {
		case csrWait:
			log.V(1).Info("leaving kubelet serving certificate request pending", "csr", csr.Name, "reason", reason, "message", message)
			continue
		case csrApprove:
			cond.Type = certv1.CertificateApproved
		case csrDeny:
			cond.Type = certv1.CertificateDenied
		}
		csr.Status.Conditions = append(csr.Status.Conditions, cond)
		if _, err := cs.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, csr.Name, csr, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return approved, err
		}
		log.Info("decided kubelet serving certificate request", "csr", csr.Name, "requester", csr.Spec.Username, "decision", cond.Type, "reason", reason, "message", message)
		if decision == csrApprove {
			approved++
		}
	}
	return approved, nil
}

// csrTenantInfo names what of the tenant the approval policies check
// requests against.
type csrTenantInfo struct {
	apiServerNames []string
	clusterRanges  []string
}

// csrTenantNames are the API server's names (its serving certificate's
// names and the endpoint's host) and the tenant's Service and pod ranges.
func csrTenantNames(s *scope, p cp.Params) csrTenantInfo {
	tc := s.tc
	sans := cp.APIServerSANs(p, s.exposure.serviceIP, tc.Spec.Exposure.Hostname, s.exposure.extraSANs(tc))
	names := append([]string{}, sans.DNSNames...)
	for _, ip := range sans.IPs {
		names = append(names, ip.String())
	}
	if u, err := url.Parse(tc.Status.Endpoint); err == nil && u.Hostname() != "" {
		names = append(names, u.Hostname())
	}
	return csrTenantInfo{apiServerNames: names, clusterRanges: []string{tc.Spec.Network.ServiceCIDR, tc.Spec.Network.PodCIDR}}
}

func allDecided(csrs []certv1.CertificateSigningRequest) bool {
	for i := range csrs {
		if !decided(&csrs[i]) {
			return false
		}
	}
	return true
}

func decided(csr *certv1.CertificateSigningRequest) bool {
	for _, c := range csr.Status.Conditions {
		if c.Type == certv1.CertificateApproved || c.Type == certv1.CertificateDenied {
			return true
		}
	}
	return false
}
