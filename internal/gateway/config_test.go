package gateway_test

import (
	"testing"

	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/yaml"

	"kubinception.dev/kubinception/internal/gateway"
	"kubinception.dev/kubinception/internal/install"
)

// TestDefaultRatesAreTheDatastoresDefaults keeps a gateway run by hand
// (DefaultConfig, the command's flags) and one run by the operator for a
// Datastore with the CRD's defaults on the same rates.
func TestDefaultRatesAreTheDatastoresDefaults(t *testing.T) {
	files, err := install.CRDFiles()
	if err != nil {
		t.Fatal(err)
	}
	data, ok := files["kubinception.dev_datastores.yaml"]
	if !ok {
		t.Fatal("no Datastore CRD embedded")
	}
	var crd struct {
		Spec struct {
			Versions []struct {
				Schema struct {
					OpenAPIV3Schema struct {
						Properties struct {
							Spec struct {
								Properties struct {
									Gateway struct {
										Properties struct {
											DefaultLimits struct {
												Properties struct {
													RequestsPerSecond struct {
														Default float64 `json:"default"`
													} `json:"requestsPerSecond"`
													BytesPerSecond struct {
														Default string `json:"default"`
													} `json:"bytesPerSecond"`
												} `json:"properties"`
											} `json:"defaultLimits"`
										} `json:"properties"`
									} `json:"gateway"`
								} `json:"properties"`
							} `json:"spec"`
						} `json:"properties"`
					} `json:"openAPIV3Schema"`
				} `json:"schema"`
			} `json:"versions"`
		} `json:"spec"`
	}
	if err := yaml.Unmarshal(data, &crd); err != nil {
		t.Fatal(err)
	}
	if len(crd.Spec.Versions) == 0 {
		t.Fatal("the Datastore CRD has no version")
	}
	d := crd.Spec.Versions[0].Schema.OpenAPIV3Schema.Properties.Spec.Properties.Gateway.Properties.DefaultLimits.Properties
	bytes, err := resource.ParseQuantity(d.BytesPerSecond.Default)
	if err != nil {
		t.Fatalf("the CRD's default bytesPerSecond: %v", err)
	}
	got := gateway.DefaultConfig().Policy.(gateway.StaticPolicy).Default
	if got.RequestsPerSecond != d.RequestsPerSecond.Default || got.BytesPerSecond != float64(bytes.Value()) {
		t.Fatalf("DefaultConfig has %.0f requests/s and %.0f bytes/s; the Datastore CRD defaults to %.0f and %d",
			got.RequestsPerSecond, got.BytesPerSecond, d.RequestsPerSecond.Default, bytes.Value())
	}
}
