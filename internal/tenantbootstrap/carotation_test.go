package tenantbootstrap

import (
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"

	"kubinception.dev/kubinception/internal/pki"
)

// While a CA rotation overlaps (the bundle holds two CAs) the addons'
// pod templates carry the bundle's hash, so they restart and load it;
// with one CA they carry nothing, so an operator upgrade rolls nothing.
func TestAddonsRestartForACABundle(t *testing.T) {
	p := params(t)
	p.Tunnel, p.TunnelServer, p.TunnelImage = true, "10.199.0.1:31001", "r/kubinception:dev"
	annotated := func(p Params) (with, without int) {
		objs, err := Objects(p)
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			var ann map[string]string
			switch o := o.(type) {
			case *appsv1.DaemonSet:
				ann = o.Spec.Template.Annotations
			case *appsv1.Deployment:
				ann = o.Spec.Template.Annotations
			default:
				continue
			}
			if ann[AnnotationCABundle] != "" {
				with++
			} else {
				without++
			}
		}
		return with, without
	}
	if with, _ := annotated(p); with != 0 {
		t.Errorf("%d addons carry %s with a single CA", with, AnnotationCABundle)
	}
	next, err := pki.NewCA("tenant-next", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	p.CAPEM = append(append([]byte{}, next.CertPEM...), p.CAPEM...)
	with, without := annotated(p)
	if with < 3 || without != 0 {
		t.Errorf("with a bundle of two CAs %d addons carry %s and %d do not; want kube-proxy, CoreDNS and the tunnel agent all", with, AnnotationCABundle, without)
	}
}
