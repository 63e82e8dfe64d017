package datastore

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	certutil "k8s.io/client-go/util/cert"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/pki"
)

// The Secret contract of a Datastore: its CA Secret holds the certificate
// of the CA that signed the members' serving certificates (its key, if the
// Secret has one, is not needed: tenants' certificates come from each
// gateway's own CA); its root Secret holds the client certificate of the
// etcd user "root", with which the operator manages tenants and the
// gateway serves them.
const (
	SecretCACert   = "ca.crt"
	SecretRootCert = "tls.crt"
	SecretRootKey  = "tls.key"
)

// Access is what the operator needs of one Datastore: its endpoints, the
// members' CA and the root credential.
type Access struct {
	Credentials Credentials
}

// SecretError says which Secret of a Datastore is missing or malformed and
// what it must hold; the reconcilers put it in a condition as it is.
type SecretError struct {
	Datastore string
	Secret    kv1.SecretReference
	Err       error
}

func (e *SecretError) Error() string {
	return fmt.Sprintf("Datastore %q: Secret %s/%s: %v", e.Datastore, e.Secret.Namespace, e.Secret.Name, e.Err)
}

func (e *SecretError) Unwrap() error { return e.Err }

// LoadAccess reads and checks a Datastore's Secrets. The reader should
// read past the operator's cache: these Secrets are the platform team's and
// carry no label of ours.
func LoadAccess(ctx context.Context, r client.Reader, ds *kv1.Datastore) (Access, error) {
	read := func(ref kv1.SecretReference) (*corev1.Secret, error) {
		s := &corev1.Secret{}
		if err := r.Get(ctx, types.NamespacedName{Namespace: ref.Namespace, Name: ref.Name}, s); err != nil {
			return nil, &SecretError{Datastore: ds.Name, Secret: ref, Err: fmt.Errorf("cannot read it: %w", err)}
		}
		return s, nil
	}
	caSecret, err := read(ds.Spec.CASecretRef)
	if err != nil {
		return Access{}, err
	}
	caPEM := caSecret.Data[SecretCACert]
	if _, err := certutil.ParseCertsPEM(caPEM); err != nil {
		return Access{}, &SecretError{Datastore: ds.Name, Secret: ds.Spec.CASecretRef,
			Err: fmt.Errorf("needs %s, the certificate of the CA that signed the members' serving certificates: %w", SecretCACert, err)}
	}
	rootSecret, err := read(ds.Spec.RootSecretRef)
	if err != nil {
		return Access{}, err
	}
	if _, err := pki.ParseKeyPair(rootSecret.Data[SecretRootCert], rootSecret.Data[SecretRootKey]); err != nil {
		return Access{}, &SecretError{Datastore: ds.Name, Secret: ds.Spec.RootSecretRef,
			Err: fmt.Errorf("needs the root client certificate as %s and %s: %w", SecretRootCert, SecretRootKey, err)}
	}
	return Access{
		Credentials: Credentials{Endpoints: ds.Spec.Endpoints, CAPEM: caPEM, CertPEM: rootSecret.Data[SecretRootCert], KeyPEM: rootSecret.Data[SecretRootKey]},
	}, nil
}
