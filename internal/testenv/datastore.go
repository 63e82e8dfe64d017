package testenv

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// CreateDatastore stores, through c, a Datastore named name for e and its
// two Secrets in namespace (created when missing), holding what the local
// admin cluster stores: the CA Secret "<name>-ca" with ca.crt and ca.key,
// and the root Secret "<name>-root" with the client certificate of the
// etcd user root as tls.crt and tls.key (and ca.crt). The Datastore is
// deleted when the test ends. Enabling etcd authentication is the
// caller's (datastore.EnableAuth).
func CreateDatastore(tb testing.TB, c client.Client, e *Etcd, name, namespace string) *kv1.Datastore {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespace}}
	if err := c.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		tb.Fatal(err)
	}
	root := e.ClientCert(tb, "root")
	for _, s := range []*corev1.Secret{
		{ObjectMeta: metav1.ObjectMeta{Name: name + "-ca", Namespace: namespace},
			Data: map[string][]byte{"ca.crt": e.CA.CertPEM, "ca.key": e.CA.KeyPEM}},
		{ObjectMeta: metav1.ObjectMeta{Name: name + "-root", Namespace: namespace},
			Data: map[string][]byte{"ca.crt": e.CA.CertPEM, "tls.crt": root.CertPEM, "tls.key": root.KeyPEM}},
	} {
		if err := c.Create(ctx, s); err != nil {
			tb.Fatal(err)
		}
	}
	ds := &kv1.Datastore{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: kv1.DatastoreSpec{
			Endpoints:     []string{e.Endpoint},
			CASecretRef:   kv1.SecretReference{Namespace: namespace, Name: name + "-ca"},
			RootSecretRef: kv1.SecretReference{Namespace: namespace, Name: name + "-root"},
		},
	}
	if err := c.Create(ctx, ds); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := c.Delete(context.Background(), ds); err != nil && !apierrors.IsNotFound(err) {
			tb.Errorf("delete Datastore %s: %v", name, err)
		}
	})
	return ds
}
