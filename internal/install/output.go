package install

import (
	"encoding/json"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// OutputFormats are the formats Write knows.
var OutputFormats = []string{"yaml", "json"}

// CheckOutputFormat says whether Write knows format.
func CheckOutputFormat(format string) error {
	for _, f := range OutputFormats {
		if f == format {
			return nil
		}
	}
	return fmt.Errorf("output format %q is not supported: use yaml or json", format)
}

// Write prints objects the way `kubectl apply -f` reads them: "yaml" is a
// stream of documents, "json" a v1 List.
func Write(w io.Writer, objs []*unstructured.Unstructured, format string) error {
	if err := CheckOutputFormat(format); err != nil {
		return err
	}
	if format == "json" {
		items := make([]any, len(objs))
		for i, u := range objs {
			items[i] = u.Object
		}
		data, err := json.MarshalIndent(map[string]any{"apiVersion": "v1", "kind": "List", "items": items}, "", "  ")
		if err != nil {
			return fmt.Errorf("encode JSON: %w", err)
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	}
	for _, u := range objs {
		data, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("encode %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		if _, err := fmt.Fprintf(w, "---\n%s", data); err != nil {
			return err
		}
	}
	return nil
}
