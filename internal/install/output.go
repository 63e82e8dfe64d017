package install

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
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

// ReadObjects parses a stream of YAML documents, as Write, `helm template`
// or `kubectl get -o yaml` print them, into objects keyed by
// apiVersion/kind/namespace/name, each normalised through JSON so that
// numbers compare alike whatever wrote them. Documents holding only
// comments are skipped; an object seen twice is an error.
func ReadObjects(stream []byte) (map[string]map[string]any, error) {
	out := map[string]map[string]any{}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(stream)))
	for {
		doc, err := r.Read()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read YAML: %w", err)
		}
		var obj map[string]any
		if err := yaml.Unmarshal(doc, &obj); err != nil {
			return nil, fmt.Errorf("parse YAML document: %w\n%s", err, doc)
		}
		if len(obj) == 0 {
			continue
		}
		data, err := json.Marshal(obj)
		if err != nil {
			return nil, err
		}
		var norm map[string]any
		if err := json.Unmarshal(data, &norm); err != nil {
			return nil, err
		}
		meta, _ := norm["metadata"].(map[string]any)
		ns, _ := meta["namespace"].(string)
		key := fmt.Sprintf("%v/%v/%s/%v", norm["apiVersion"], norm["kind"], ns, meta["name"])
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%s appears twice", key)
		}
		out[key] = norm
	}
}
