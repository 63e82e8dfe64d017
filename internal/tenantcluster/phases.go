package tenantcluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/pki"
)

// datastoreProbeTimeout bounds the read that tells an unreachable
// datastore before a deletion: a quorum answers it in milliseconds.
const datastoreProbeTimeout = 5 * time.Second

// Waits between checks of things that do not send events.
const (
	datastoreRetry        = 10 * time.Second
	datastoreMissingRetry = 30 * time.Second
	endpointRetry         = 5 * time.Second
	// startingRetry is only a safety net: a starting control plane's
	// pods and Deployment are watched, and their changes reconcile the
	// tenant at once.
	startingRetry = time.Minute
	deletionRetry = 2 * time.Second
)

// datastoreConn is a tenant's datastore: the Datastore, the operator's
// access and client, and the gateway tenants reach it through.
type datastoreConn struct {
	name   string
	ds     *kv1.Datastore
	access datastore.Access
	cli    *clientv3.Client
	// gatewayEndpoint is the gateway's URL; gatewayCA signs the tenant's
	// client certificate and the gateway's serving certificate.
	gatewayEndpoint string
	gatewayCA       *pki.KeyPair
}

// connectDatastore resolves the tenant's Datastore and its credentials. A
// missing or broken datastore records DatastoreReady False with what to do
// and returns a result to wait; it never blocks.
func (r *Reconciler) connectDatastore(ctx context.Context, s *scope) (ctrl.Result, error) {
	name := datastoreName(s.tc)
	ds := &kv1.Datastore{}
	if err := r.Client.Get(ctx, types.NamespacedName{Name: name}, ds); err != nil {
		if apierrors.IsNotFound(err) {
			s.fail(kv1.ConditionDatastoreReady, kv1.ReasonDatastoreNotFound,
				fmt.Sprintf("Datastore %q does not exist: create it (kubinception install creates \"default\" on a local admin cluster) or set spec.datastore.name", name))
			return ctrl.Result{RequeueAfter: datastoreMissingRetry}, nil
		}
		return ctrl.Result{}, err
	}
	access, err := datastore.LoadAccess(ctx, r.APIReader, ds)
	if err != nil {
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonDatastoreCredentials, err.Error())
		return ctrl.Result{RequeueAfter: datastoreMissingRetry}, nil
	}
	cli, err := r.Datastores.Get(name, access.Credentials)
	if err != nil {
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonDatastoreCredentials, fmt.Sprintf("Datastore %q: %v", name, err))
		return ctrl.Result{RequeueAfter: datastoreMissingRetry}, nil
	}
	if ds.Status.Gateway.Endpoint == "" {
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonWaitingForGateway,
			fmt.Sprintf("Datastore %q has no gateway endpoint yet: the operator starts its gateway (see the Datastore's GatewayAvailable condition)", name))
		return ctrl.Result{RequeueAfter: datastoreMissingRetry}, nil
	}
	caSecret := &corev1.Secret{}
	if err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: r.GatewayNamespace, Name: gatewaydeploy.CASecretName(name)}, caSecret); err != nil {
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonWaitingForGateway, fmt.Sprintf("Datastore %q: cannot read its gateway's CA: %v", name, err))
		return ctrl.Result{RequeueAfter: datastoreMissingRetry}, nil
	}
	gatewayCA, err := pki.ParseKeyPair(caSecret.Data[gatewaydeploy.FileCACert], caSecret.Data[gatewaydeploy.FileCAKey])
	if err != nil {
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonWaitingForGateway, fmt.Sprintf("Datastore %q: its gateway's CA Secret %s/%s: %v", name, r.GatewayNamespace, caSecret.Name, err))
		return ctrl.Result{RequeueAfter: datastoreMissingRetry}, nil
	}
	s.etcd = datastoreConn{name: name, ds: ds, access: access, cli: cli, gatewayEndpoint: ds.Status.Gateway.Endpoint, gatewayCA: gatewayCA}
	if s.tc.Status.Datastore.Name == "" {
		// Placed: from now on a change of spec.datastore.name is a move.
		s.tc.Status.Datastore.Name = name
	}
	if s.tenancy, err = datastore.TenancyFor(string(s.tc.UID)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{}, nil
}

// reconcileDatastore gives the tenant its prefix, user and role.
func (r *Reconciler) reconcileDatastore(ctx context.Context, s *scope) (ctrl.Result, error) {
	if res, err := r.connectDatastore(ctx, s); err != nil || !res.IsZero() {
		return res, err
	}
	// Every auth call is a raft round in the shared etcd; a tenancy known
	// to be in place is checked again only when a policy says so.
	reason, detail := r.tenancy.needsCheck(s)
	if reason == "" {
		s.succeed(kv1.ConditionDatastoreReady, kv1.ReasonTenancyProvisioned, tenancyMessage(s))
		r.reportUsage(ctx, s)
		return ctrl.Result{}, nil
	}
	ctrl.LoggerFrom(ctx).V(1).Info("checking tenancy", "reason", reason, "detail", detail)
	ectx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := datastore.EnsureTenancy(ectx, s.etcd.cli, s.tenancy); err != nil {
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonDatastoreUnreachable,
			fmt.Sprintf("cannot provision the tenant in Datastore %q (%s): %v; retrying", s.etcd.name, strings.Join(s.etcd.access.Credentials.Endpoints, ","), err))
		return ctrl.Result{RequeueAfter: datastoreRetry}, nil
	}
	r.tenancy.mark(s.tc.UID, s.now)
	s.tc.Status.Datastore.Prefix, s.tc.Status.Datastore.User = s.tenancy.Prefix, s.tenancy.User
	s.succeed(kv1.ConditionDatastoreReady, kv1.ReasonTenancyProvisioned, tenancyMessage(s))
	r.reportUsage(ctx, s)
	return ctrl.Result{}, nil
}

// reportUsage puts the tenant's usage, as its gateway counts it, and the
// quota in force into status, and records QuotaAvailable. A gateway that
// does not answer leaves the last report in place: usage is information,
// not a reason to stop the reconcile.
func (r *Reconciler) reportUsage(ctx context.Context, s *scope) {
	limits := datastore.TenantLimits(s.tc, s.etcd.ds)
	st := &s.tc.Status.Datastore
	st.QuotaBytes = limits.QuotaBytes
	if r.Usage != nil {
		all, err := r.Usage.Read(ctx, gatewaydeploy.UsageURLFor(s.etcd.gatewayEndpoint))
		if err != nil {
			ctrl.LoggerFrom(ctx).V(1).Info("cannot read usage from the gateway", "error", err.Error())
		} else {
			u := all[string(s.tc.UID)]
			st.UsedBytes, st.Keys = u.Bytes, u.Keys
		}
	}
	reason, message := quotaState(st.UsedBytes, st.QuotaBytes)
	st.Usage = usageText(st.UsedBytes, st.QuotaBytes)
	if reason == kv1.ReasonWithinQuota {
		s.succeed(kv1.ConditionQuotaAvailable, reason, message)
	} else {
		s.fail(kv1.ConditionQuotaAvailable, reason, message)
	}
}

func tenancyMessage(s *scope) string {
	return fmt.Sprintf("keys under %s in Datastore %q, reached only through its gateway at %s", s.tenancy.Prefix, s.etcd.name, s.etcd.gatewayEndpoint)
}

// quotaState is QuotaAvailable's reason and message for a usage and quota.
func quotaState(used, quota int64) (string, string) {
	switch {
	case quota <= 0:
		return kv1.ReasonWithinQuota, "no quota"
	case used >= quota:
		return kv1.ReasonQuotaExhausted, fmt.Sprintf("the tenant uses %s, its whole quota: writes fail with \"database space exceeded\" until it deletes objects or spec.datastore.quotaBytes is raised", usageText(used, quota))
	case used*10 >= quota*9:
		return kv1.ReasonQuotaNearlyExhausted, fmt.Sprintf("the tenant uses %s: at the quota writes fail; delete objects or raise spec.datastore.quotaBytes", usageText(used, quota))
	}
	return kv1.ReasonWithinQuota, "the tenant uses " + usageText(used, quota)
}

// usageText reads as "12Mi of 2Gi (1%)".
func usageText(used, quota int64) string {
	if quota <= 0 {
		return roundedBinary(used)
	}
	return fmt.Sprintf("%s of %s (%d%%)", roundedBinary(used), roundedBinary(quota), used*100/quota)
}

// roundedBinary prints bytes in the largest binary unit that keeps one
// decimal, as people read sizes.
func roundedBinary(n int64) string {
	const units = "KMGTPE"
	if n < 1024 {
		return fmt.Sprintf("%d", n)
	}
	f, i := float64(n)/1024, 0
	for f >= 1024 && i < len(units)-1 {
		f /= 1024
		i++
	}
	return strconv.FormatFloat(f, 'f', 1, 64) + string(units[i]) + "i"
}

// exposure is where the API server is reached.
type exposure struct {
	serviceIP string
	// port is the API server's secure port (the node port for NodePort).
	port int32
	// advertise is the address the API server advertises.
	advertise string
	endpoint  string
	// tunnel is host:port where agents reach the tunnel servers, and
	// tunnelClients where the tenant's load balancers do (both empty
	// without the tunnel).
	tunnel, tunnelClients string
	// frontDoorNames are the tenant's names at the front door (its
	// API server's and its tunnel's), carried by the serving
	// certificate; empty with another exposure type.
	frontDoorNames []string
}

// reconcileExposure applies the Service and works out the endpoint. For
// NodePort the API server listens on the allocated node port itself, so the
// address it advertises inside the tenant is reachable from outside.
func (r *Reconciler) reconcileExposure(ctx context.Context, s *scope) (ctrl.Result, error) {
	tc := s.tc
	typ := corev1.ServiceType(tc.Spec.Exposure.Type)
	if typ == "" {
		typ = corev1.ServiceTypeNodePort
	}
	frontDoor := tc.Spec.Exposure.Type == kv1.ExposureFrontDoor
	if frontDoor {
		// Behind the front door the API server keeps its node port for
		// clients inside the tenant, which send no server name.
		typ = corev1.ServiceTypeNodePort
	}
	// Read past the cache: a stale miss would give up the node port.
	existing := &corev1.Service{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.ServiceName(tc.Name)}, existing)
	if err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, err
	}
	ports := controlplane.ServicePorts{APIServerTarget: controlplane.DefaultPort, Tunnel: tc.Spec.Addons.Tunnel.IsEnabled()}
	if err == nil && existing.Spec.Type == corev1.ServiceTypeNodePort && typ == corev1.ServiceTypeNodePort {
		ports.APIServerNodePort, ports.TunnelNodePort = servicePorts(existing)
	}
	if ports.APIServerNodePort != 0 {
		ports.APIServerTarget = ports.APIServerNodePort
	}
	svc := controlplane.Service(tc.Name, tc.Namespace, typ, ports)
	if err := r.apply(ctx, tc, svc); err != nil {
		return ctrl.Result{}, fmt.Errorf("apply Service: %w", err)
	}
	if typ == corev1.ServiceTypeNodePort && (ports.APIServerNodePort == 0 || ports.Tunnel && ports.TunnelNodePort == 0) {
		ports.APIServerNodePort, ports.TunnelNodePort = servicePorts(svc)
		if ports.APIServerNodePort == 0 || ports.Tunnel && ports.TunnelNodePort == 0 {
			return ctrl.Result{}, errors.New("the API server allocated no node port")
		}
		ports.APIServerTarget = ports.APIServerNodePort
		svc = controlplane.Service(tc.Name, tc.Namespace, typ, ports)
		if err := r.apply(ctx, tc, svc); err != nil {
			return ctrl.Result{}, fmt.Errorf("apply Service: %w", err)
		}
	}
	nodePort := ports.APIServerNodePort

	ex := exposure{serviceIP: svc.Spec.ClusterIP, port: controlplane.DefaultPort}
	switch typ {
	case corev1.ServiceTypeNodePort:
		ex.port = nodePort
		ip, err := r.nodeAddress(ctx)
		if err != nil {
			return ctrl.Result{}, err
		}
		if ip == "" {
			s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonWaitingForEndpoint, "no admin node has an InternalIP to expose the API server on")
			return ctrl.Result{RequeueAfter: endpointRetry}, nil
		}
		ex.advertise = ip
	case corev1.ServiceTypeLoadBalancer:
		for _, ing := range svc.Status.LoadBalancer.Ingress {
			if ing.IP != "" {
				ex.advertise = ing.IP
				break
			}
		}
		if ex.advertise == "" {
			s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonWaitingForEndpoint,
				fmt.Sprintf("Service %s has no load-balancer address yet: the admin cluster needs a load-balancer implementation, or use exposure.type NodePort", svc.Name))
			return ctrl.Result{RequeueAfter: endpointRetry}, nil
		}
	default:
		ex.advertise = svc.Spec.ClusterIP
	}
	host := ex.advertise
	if tc.Spec.Exposure.Hostname != "" {
		host = tc.Spec.Exposure.Hostname
	}
	ex.endpoint = "https://" + net.JoinHostPort(host, strconv.Itoa(int(ex.port)))
	if ports.Tunnel {
		tunnelPort := int32(controlplane.TunnelPort)
		if typ == corev1.ServiceTypeNodePort {
			tunnelPort = ports.TunnelNodePort
		}
		ex.tunnel = net.JoinHostPort(host, strconv.Itoa(int(tunnelPort)))
		clients := controlplane.TunnelClientsService(tc.Name, tc.Namespace)
		if err := r.apply(ctx, tc, clients); err != nil {
			return ctrl.Result{}, fmt.Errorf("apply Service: %w", err)
		}
		ex.tunnelClients = net.JoinHostPort(clients.Spec.ClusterIP, strconv.Itoa(controlplane.TunnelClientPort))
	} else {
		// The tunnel was switched off: its clients' Service goes.
		clients := &corev1.Service{}
		key := types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.TunnelClientsServiceName(tc.Name)}
		if err := r.Client.Get(ctx, key, clients); err == nil {
			if err := r.Client.Delete(ctx, clients); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, err
			}
		} else if !apierrors.IsNotFound(err) {
			return ctrl.Result{}, err
		}
	}
	if frontDoor {
		if res, err := r.exposeThroughFrontDoor(ctx, s, &ex); err != nil || !res.IsZero() {
			return res, err
		}
	} else if err := r.removeFrontDoor(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	s.exposure = ex
	tc.Status.Endpoint = ex.endpoint
	return ctrl.Result{}, nil
}

// servicePorts reads the node ports of the API server's and the
// tunnel's ports of a Service.
func servicePorts(svc *corev1.Service) (apiserver, tunnel int32) {
	for _, p := range svc.Spec.Ports {
		switch p.Name {
		case "https":
			apiserver = p.NodePort
		case "tunnel":
			tunnel = p.NodePort
		}
	}
	return apiserver, tunnel
}

// nodeAddress is the InternalIP of the first Ready admin node by name, so
// every tenant picks the same node while it stays Ready.
func (r *Reconciler) nodeAddress(ctx context.Context) (string, error) {
	var nodes corev1.NodeList
	if err := r.Client.List(ctx, &nodes); err != nil {
		return "", err
	}
	sort.Slice(nodes.Items, func(i, j int) bool { return nodes.Items[i].Name < nodes.Items[j].Name })
	var fallback string
	for _, n := range nodes.Items {
		for _, a := range n.Status.Addresses {
			if a.Type != corev1.NodeInternalIP || net.ParseIP(a.Address).To4() == nil {
				continue
			}
			if nodeReady(&n) {
				return a.Address, nil
			}
			if fallback == "" {
				fallback = a.Address
			}
		}
	}
	return fallback, nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// params gathers the control plane's parameters.
func (r *Reconciler) params(s *scope) controlplane.Params {
	tc := s.tc
	registry := tc.Spec.ControlPlane.ImageRegistry
	if registry == "" {
		registry = r.Registry
	}
	replicas := int32(1)
	if tc.Spec.ControlPlane.Replicas != nil {
		replicas = *tc.Spec.ControlPlane.Replicas
	}
	return controlplane.Params{
		Name: tc.Name, Namespace: tc.Namespace, Version: tc.Spec.Version, Registry: registry, Replicas: replicas,
		Port: s.exposure.port, AdvertiseAddress: s.exposure.advertise,
		ServiceCIDR: tc.Spec.Network.ServiceCIDR, PodCIDR: tc.Spec.Network.PodCIDR, ClusterDomain: tc.Spec.Network.ClusterDomain,
		EtcdEndpoints: []string{s.etcd.gatewayEndpoint},
		PKISecret:     controlplane.PKISecretName(tc.Name), PKIHash: s.pkiHash,
		EncryptionSecret: controlplane.EncryptionSecretName(tc.Name), EncryptionHash: s.encryption.hash,
		ExtraArgs: tc.Spec.ControlPlane.ExtraArgs, Resources: tc.Spec.ControlPlane.Resources,
		Tunnel: tc.Spec.Addons.Tunnel.IsEnabled(), Image: r.Image,
	}
}

// checkSpec refuses, before anything is applied, what the API server's
// rules refuse too but an object stored before those rules existed may
// still carry: extra arguments outside the allow-list. Nothing is rolled,
// so a running control plane keeps running as it was.
func (r *Reconciler) checkSpec(_ context.Context, s *scope) (ctrl.Result, error) {
	if err := controlplane.ValidateExtraArgs(s.tc.Spec.ControlPlane.ExtraArgs); err != nil {
		s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonExtraArgsNotAllowed, err.Error()+"; nothing is applied, the running control plane is left as it is")
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	if reg := s.tc.Spec.ControlPlane.ImageRegistry; reg != "" && !registryAllowed(reg, r.allowedRegistries()) {
		err := fmt.Errorf("spec.controlPlane.imageRegistry %q is not allowed: this platform's operator allows %s (its --allowed-registries)", reg, strings.Join(r.allowedRegistries(), ", "))
		s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonRegistryNotAllowed, err.Error()+"; nothing is applied, the running control plane is left as it is")
		return ctrl.Result{}, reconcile.TerminalError(err)
	}
	return ctrl.Result{}, nil
}

// allowedRegistries are AllowedRegistries, or the default registry alone.
func (r *Reconciler) allowedRegistries() []string {
	if len(r.AllowedRegistries) > 0 {
		return r.AllowedRegistries
	}
	return []string{r.Registry}
}

// registryAllowed says whether reg is one of allowed or a path below one
// ("registry.example.com/kube" is below "registry.example.com"; a host
// that merely starts the same, "registry.example.com.evil", is not).
func registryAllowed(reg string, allowed []string) bool {
	for _, a := range allowed {
		a = strings.TrimSuffix(a, "/")
		if a != "" && (reg == a || strings.HasPrefix(reg, a+"/")) {
			return true
		}
	}
	return false
}

// reconcileControlPlane applies the Deployment and reports its health,
// naming a missing image or a crashing container when there is one.
func (r *Reconciler) reconcileControlPlane(ctx context.Context, s *scope) (ctrl.Result, error) {
	p := r.params(s)
	if res, err := r.admitStart(ctx, s); err != nil || !res.IsZero() {
		return res, err
	}
	if err := r.applyEgress(ctx, s.tc, p); err != nil {
		return ctrl.Result{}, err
	}
	// The faster start's probe, once set (by hibernation, when no pod
	// runs), stays: a change of probe alone would roll the pods.
	cur := &appsv1.Deployment{}
	if err := r.Client.Get(ctx, types.NamespacedName{Namespace: s.tc.Namespace, Name: controlplane.DeploymentName(s.tc.Name)}, cur); err == nil {
		p.FastStart = controlplane.FastStarting(cur)
	} else if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("read Deployment: %w", err)
	}
	dep := controlplane.Deployment(p)
	if err := r.apply(ctx, s.tc, dep); err != nil {
		return ctrl.Result{}, fmt.Errorf("apply Deployment: %w", err)
	}
	st := dep.Status
	if st.AvailableReplicas > 0 {
		r.releaseStart(s)
	}
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(s.tc.Namespace), client.MatchingLabels(controlplane.Labels(s.tc.Name))); err != nil {
		return ctrl.Result{}, fmt.Errorf("list control-plane pods: %w", err)
	}
	ro := observeRollout(dep, p.Replicas, pods.Items)
	// status.version is what runs: it moves only once the rollout is
	// done, every pod is of the template just applied (at spec.version)
	// and available, and no pod of an earlier template is left.
	if ro.done {
		s.tc.Status.Version = s.tc.Spec.Version
	}
	if s.tc.Status.Version != "" {
		s.record(kv1.ConditionUpgrading, upgradeState(s.tc.Spec.Version, s.tc.Status.Version, ro.done, upgrading(s), ro))
		recordVersion(s.tc, upgrading(s))
	}
	if ro.done && s.tc.Status.Version == s.tc.Spec.Version {
		s.succeed(kv1.ConditionControlPlaneAvailable, kv1.ReasonControlPlaneAvailable,
			fmt.Sprintf("%d/%d control-plane pods ready", st.AvailableReplicas, p.Replicas))
		return ctrl.Result{}, nil
	}
	if ro.serving {
		// A rollout: the old pods serve until their replacements are
		// ready. The addons and everything after wait for its end, so
		// nothing newer than the control plane runs in the tenant.
		s.succeed(kv1.ConditionControlPlaneAvailable, kv1.ReasonControlPlaneAvailable,
			fmt.Sprintf("%d/%d control-plane pods ready, rolling out (%s)", st.AvailableReplicas, p.Replicas, ro.describe()))
		// A new pod that cannot start holds the rollout: say why where
		// the upgrade is reported.
		if reason, message := r.diagnosePods(ctx, s.tc); reason != "" && upgrading(s) {
			s.record(kv1.ConditionUpgrading, result{ok: true, reason: reason, message: message + "; the old control-plane pods keep serving"})
		}
		return ctrl.Result{RequeueAfter: startingRetry}, nil
	}
	reason, message := r.diagnosePods(ctx, s.tc)
	if reason == "" {
		reason, message = kv1.ReasonControlPlaneStarting, fmt.Sprintf("%d/%d control-plane pods ready", st.AvailableReplicas, p.Replicas)
	}
	s.fail(kv1.ConditionControlPlaneAvailable, reason, message)
	if s.tc.Status.Version == "" && readyAPIServer(pods.Items) != "" {
		// A first start whose API server is ready while the kubelet
		// still starts the controller manager, scheduler and tunnel
		// beside it (about a second, bench/results/tenants.md): the
		// phases after this one need only the API server, so they run
		// now and overlap with that start. Ready waits for this
		// condition all the same; the pod turning ready reconciles again.
		s.startingVersion = s.tc.Spec.Version
		return ctrl.Result{}, nil
	}
	return ctrl.Result{RequeueAfter: startingRetry}, nil
}

// applyEgress writes the API server's egress selector configuration when
// the tunnel is on (unless the operator's cache has it already), and
// removes it when the tunnel is off.
func (r *Reconciler) applyEgress(ctx context.Context, tc *kv1.TenantCluster, p controlplane.Params) error {
	want := controlplane.EgressSecret(p)
	cur := &corev1.Secret{}
	err := r.Client.Get(ctx, client.ObjectKeyFromObject(want), cur)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read egress configuration: %w", err)
	}
	found := err == nil
	switch {
	case p.Tunnel && found && objects.SameData(cur.Data, want.Data) && metav1.IsControlledBy(cur, tc):
		return nil
	case p.Tunnel:
		if err := r.apply(ctx, tc, want); err != nil {
			return fmt.Errorf("apply egress configuration: %w", err)
		}
	case found:
		if err := r.Client.Delete(ctx, cur); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("delete egress configuration: %w", err)
		}
	}
	return nil
}

// diagnosePods looks at the control-plane pods for a reason a person can
// act on: an image that is not there, or a container that keeps failing.
func (r *Reconciler) diagnosePods(ctx context.Context, tc *kv1.TenantCluster) (string, string) {
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(tc.Namespace), client.MatchingLabels(controlplane.Labels(tc.Name))); err != nil {
		return "", ""
	}
	for _, pod := range pods.Items {
		for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
			if w := cs.State.Waiting; w != nil {
				switch w.Reason {
				case "ErrImageNeverPull", "ErrImagePull", "ImagePullBackOff", "InvalidImageName":
					return kv1.ReasonImageMissing, fmt.Sprintf("pod %s cannot get image %s (%s): build and import it (kubinception build components --version %s, then kubinception admin up) or set spec.controlPlane.imageRegistry",
						pod.Name, cs.Image, w.Reason, tc.Spec.Version)
				case "CrashLoopBackOff":
					msg := ""
					if t := cs.LastTerminationState.Terminated; t != nil {
						msg = strings.TrimSpace(t.Message)
						if len(msg) > 300 {
							msg = msg[len(msg)-300:]
						}
					}
					return kv1.ReasonControlPlaneFailing, fmt.Sprintf("container %s of pod %s keeps failing (restarts %d): %s", cs.Name, pod.Name, cs.RestartCount, msg)
				}
			}
		}
	}
	return "", ""
}

// apply server-side applies obj, owned by tc and labelled with its name,
// and reads back the result into obj.
func (r *Reconciler) apply(ctx context.Context, tc *kv1.TenantCluster, obj client.Object) error {
	return objects.Apply(ctx, r.Client, tc, obj, map[string]string{controlplane.LabelTenant: tc.Name})
}

// reconcileDelete removes the control plane, then every key under the
// tenant's prefix, then its etcd user and role, then the finalizer. Each
// step records Deleting with what it waits for; if the datastore cannot be
// reached, DatastoreReady says so and deletion resumes when it is back.
func (r *Reconciler) reconcileDelete(ctx context.Context, s *scope) (ctrl.Result, error) {
	log := ctrl.LoggerFrom(ctx)
	tc := s.tc
	if !controllerutil.ContainsFinalizer(tc, kv1.Finalizer) {
		return ctrl.Result{}, nil
	}
	s.deleting = true
	r.releaseStart(s)
	dep := &appsv1.Deployment{}
	err := r.Client.Get(ctx, types.NamespacedName{Namespace: tc.Namespace, Name: controlplane.DeploymentName(tc.Name)}, dep)
	switch {
	case err == nil:
		if dep.DeletionTimestamp.IsZero() {
			policy := metav1.DeletePropagationForeground
			if err := r.Client.Delete(ctx, dep, &client.DeleteOptions{PropagationPolicy: &policy}); err != nil && !apierrors.IsNotFound(err) {
				return ctrl.Result{}, fmt.Errorf("delete control plane: %w", err)
			}
			log.Info("deleting control plane", "deployment", dep.Name)
		}
		s.succeed(kv1.ConditionDeleting, kv1.ReasonDeletingControlPlane, "waiting for the control plane to stop before deleting its data")
		return ctrl.Result{RequeueAfter: deletionRetry}, nil
	case !apierrors.IsNotFound(err):
		return ctrl.Result{}, err
	}
	// No API server may write after its keys are gone.
	var pods corev1.PodList
	if err := r.Client.List(ctx, &pods, client.InNamespace(tc.Namespace), client.MatchingLabels(controlplane.Labels(tc.Name))); err != nil {
		return ctrl.Result{}, err
	}
	if len(pods.Items) > 0 {
		s.succeed(kv1.ConditionDeleting, kv1.ReasonDeletingControlPlane, fmt.Sprintf("waiting for %d control-plane pods to stop", len(pods.Items)))
		return ctrl.Result{RequeueAfter: deletionRetry}, nil
	}

	if res, err := r.connectDatastore(ctx, s); err != nil || !res.IsZero() {
		why := s.results[kv1.ConditionDatastoreReady].message
		s.succeed(kv1.ConditionDeleting, kv1.ReasonDeletingData, "cannot delete the tenant's keys yet: "+why)
		return res, err
	}
	// A datastore that does not answer at once is reported unreachable
	// at once, rather than after the deletion's own deadline.
	pctx, cancelProbe := context.WithTimeout(ctx, datastoreProbeTimeout)
	err = datastore.Answering(pctx, s.etcd.cli)
	cancelProbe()
	if err == nil {
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = datastore.DeleteTenancy(ectx, s.etcd.cli, s.tenancy)
		cancel()
	}
	if err != nil {
		msg := fmt.Sprintf("cannot reach Datastore %q to delete keys under %s and user %s: %v; deletion resumes when it is back",
			s.etcd.name, s.tenancy.Prefix, s.tenancy.User, err)
		s.fail(kv1.ConditionDatastoreReady, kv1.ReasonDatastoreUnreachable, msg)
		s.succeed(kv1.ConditionDeleting, kv1.ReasonDeletingData, msg)
		return ctrl.Result{RequeueAfter: datastoreRetry}, nil
	}
	log.Info("deleted the tenant's keys, etcd user and role", "prefix", s.tenancy.Prefix, "datastore", s.etcd.name)
	r.event(tc, corev1.EventTypeNormal, kv1.ReasonDeletingData, "DeleteData", fmt.Sprintf("deleted every key under %s and etcd user %s in Datastore %q", s.tenancy.Prefix, s.tenancy.User, s.etcd.name))
	// Its front-door route and Lease are in another namespace, where
	// no owner reference reaches.
	if err := r.removeFrontDoor(ctx, tc); err != nil {
		return ctrl.Result{}, err
	}
	r.forgetTenant(tc.UID)
	forgetVersion(tc)
	r.tenancy.forget(tc.UID)
	forgetCertificateTimes(tc)
	forgetCARotation(tc)
	patch := client.MergeFrom(tc.DeepCopy())
	controllerutil.RemoveFinalizer(tc, kv1.Finalizer)
	if err := r.Client.Patch(ctx, tc, patch); err != nil && !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("remove finalizer: %w", err)
	}
	// The object is going: there is no status left to write.
	s.skipStatus = true
	return ctrl.Result{}, nil
}
