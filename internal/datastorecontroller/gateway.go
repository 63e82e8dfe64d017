package datastorecontroller

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/gatewaydeploy"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/pki"
)

// GatewayOptions say how the operator runs each Datastore's gateway.
type GatewayOptions struct {
	// Namespace holds every gateway's objects (the operator's own).
	Namespace string
	// Image is the kubinception image; the gateway is its `gateway`
	// command.
	Image           string
	ImagePullPolicy corev1.PullPolicy
}

// reconcileGateway runs the Datastore's gateway: the tenant CA (kept in a
// Secret no pod mounts), the Service, the Secret the gateway pods mount
// (serving certificate for the Service, the tenant CA, the datastore CA and
// the root credential) and the Deployment. It reports the endpoint and the
// ready replicas in status.
func (r *Reconciler) reconcileGateway(ctx context.Context, ds *kv1.Datastore, access datastore.Access, now time.Time) error {
	o := r.Gateway
	if o.Namespace == "" || o.Image == "" {
		return fmt.Errorf("the operator runs without a gateway namespace or image: start it with --gateway-namespace and --gateway-image (kubinception install sets both)")
	}
	caSecret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: gatewaydeploy.CASecretName(ds.Name)}, caSecret)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read gateway CA: %w", err)
	}
	ca, err := pki.KeepOrNewCA(caSecret.Data[gatewaydeploy.FileCACert], caSecret.Data[gatewaydeploy.FileCAKey], "kubinception-gateway-"+ds.Name+"-tenant-ca", now)
	if err != nil {
		return err
	}
	if string(caSecret.Data[gatewaydeploy.FileCACert]) != string(ca.CertPEM) {
		if err := objects.Apply(ctx, r.Client, ds, secret(o.Namespace, gatewaydeploy.CASecretName(ds.Name), map[string][]byte{
			gatewaydeploy.FileCACert: ca.CertPEM, gatewaydeploy.FileCAKey: ca.KeyPEM}), nil); err != nil {
			return fmt.Errorf("apply gateway CA Secret: %w", err)
		}
	}

	p := gatewaydeploy.Params{
		Datastore: ds.Name, Namespace: o.Namespace, Image: o.Image, ImagePullPolicy: o.ImagePullPolicy,
		Replicas: 2, Resources: ds.Spec.Gateway.Resources, DatastoreEndpoints: ds.Spec.Endpoints,
	}
	if ds.Spec.Gateway.Replicas != nil {
		p.Replicas = *ds.Spec.Gateway.Replicas
	}
	svc := gatewaydeploy.Service(p)
	if err := objects.Apply(ctx, r.Client, ds, svc, nil); err != nil {
		return fmt.Errorf("apply gateway Service: %w", err)
	}

	mounted := &corev1.Secret{}
	err = r.APIReader.Get(ctx, types.NamespacedName{Namespace: o.Namespace, Name: gatewaydeploy.SecretName(ds.Name)}, mounted)
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("read gateway Secret: %w", err)
	}
	serving, err := ca.KeepOrIssue(mounted.Data[gatewaydeploy.FileServingCert], mounted.Data[gatewaydeploy.FileServingKey],
		gatewaydeploy.ServingSpec(ds.Name, o.Namespace, svc.Spec.ClusterIP), now)
	if err != nil {
		return err
	}
	data := map[string][]byte{
		gatewaydeploy.FileServingCert:   serving.CertPEM,
		gatewaydeploy.FileServingKey:    serving.KeyPEM,
		gatewaydeploy.FileTenantCA:      ca.CertPEM,
		gatewaydeploy.FileDatastoreCA:   access.Credentials.CAPEM,
		gatewaydeploy.FileDatastoreCert: access.Credentials.CertPEM,
		gatewaydeploy.FileDatastoreKey:  access.Credentials.KeyPEM,
	}
	if !objects.SameData(mounted.Data, data) {
		if err := objects.Apply(ctx, r.Client, ds, secret(o.Namespace, gatewaydeploy.SecretName(ds.Name), data), nil); err != nil {
			return fmt.Errorf("apply gateway Secret: %w", err)
		}
	}
	p.SecretHash = objects.HashData(data)
	dep := gatewaydeploy.Deployment(p)
	if err := objects.Apply(ctx, r.Client, ds, dep, nil); err != nil {
		return fmt.Errorf("apply gateway Deployment: %w", err)
	}
	ds.Status.Gateway = kv1.GatewayStatus{Endpoint: gatewaydeploy.Endpoint(svc.Spec.ClusterIP), ReadyReplicas: dep.Status.ReadyReplicas}
	return nil
}

func secret(namespace, name string, data map[string][]byte) *corev1.Secret {
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace},
		Type:       corev1.SecretTypeOpaque,
		Data:       data,
	}
}
