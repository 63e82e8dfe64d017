package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/install"
	"kubinception.dev/kubinception/internal/local/admincluster"
)

// ensureLocalDatastores creates a Datastore for each further datastore
// the local admin cluster runs (admin up --datastores 2 or more), from the
// Secrets admin up stored for it; the operator then starts its gateway.
// Existing Datastores are left as they are.
func ensureLocalDatastores(ctx context.Context, c client.Client, out io.Writer) error {
	var secrets corev1.SecretList
	if err := c.List(ctx, &secrets, client.InNamespace(admincluster.SystemNamespace), client.HasLabels{admincluster.DatastoreLabel}); err != nil {
		return fmt.Errorf("list the local datastores' Secrets: %w", err)
	}
	for _, s := range secrets.Items {
		name := s.Labels[admincluster.DatastoreLabel]
		if name == install.DefaultDatastoreName || s.Name != name+"-root" {
			continue
		}
		ds := &kv1.Datastore{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: install.OperatorLabels()},
			Spec: kv1.DatastoreSpec{
				Endpoints:     strings.Split(string(s.Data["endpoints"]), ","),
				CASecretRef:   kv1.SecretReference{Namespace: admincluster.SystemNamespace, Name: name + "-ca"},
				RootSecretRef: kv1.SecretReference{Namespace: admincluster.SystemNamespace, Name: name + "-root"},
			},
		}
		err := c.Create(ctx, ds)
		switch {
		case apierrors.IsAlreadyExists(err):
		case err != nil:
			return fmt.Errorf("create Datastore %s: %w", name, err)
		default:
			fmt.Fprintf(out, "datastore/%s created (the local admin cluster's datastore %s)\n", name, name)
		}
	}
	return nil
}
