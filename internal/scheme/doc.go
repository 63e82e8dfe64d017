// Package scheme builds the runtime scheme every client of kubinception
// uses: Kubernetes' built-in kinds, CustomResourceDefinitions and
// kubinception.dev/v1alpha1.
package scheme
