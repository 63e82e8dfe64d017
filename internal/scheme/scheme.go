package scheme

import (
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
)

// New returns a scheme with the built-in kinds, CustomResourceDefinitions
// and kubinception's.
func New() *runtime.Scheme {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		panic(err)
	}
	if err := kv1.AddToScheme(s); err != nil {
		panic(err)
	}
	// The operator applies addons' CustomResourceDefinitions inside tenants.
	if err := apiextensionsv1.AddToScheme(s); err != nil {
		panic(err)
	}
	return s
}
