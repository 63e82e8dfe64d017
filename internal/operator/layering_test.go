package operator

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// TestOperatorDoesNotImportLocalPlatform keeps the layering of
// docs/architecture.md true: the operator and the packages it is built from
// never import the local-platform tooling under internal/local (which may
// import them). The CLI and the local packages themselves are exempt.
func TestOperatorDoesNotImportLocalPlatform(t *testing.T) {
	const module = "kubinception.dev/kubinception/"
	out, err := exec.Command("go", "list", "-json=ImportPath,Deps", module+"...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		if !strings.HasPrefix(rel, "internal/") && !strings.HasPrefix(rel, "api/") ||
			strings.HasPrefix(rel, "internal/local") || rel == "internal/cli" || strings.HasPrefix(rel, "internal/testenv") {
			continue
		}
		checked++
		for _, d := range p.Deps {
			if strings.HasPrefix(d, module+"internal/local") {
				t.Errorf("%s imports %s: operator packages must not depend on the local platform", rel, strings.TrimPrefix(d, module))
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d operator packages: the package listing is not what this test expects", checked)
	}
}
