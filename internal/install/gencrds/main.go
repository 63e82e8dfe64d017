// Command gencrds finishes the CRDs controller-gen wrote and puts them where
// they are used: it applies install.FinalizeCRD (which writes the release
// policy's supported Kubernetes versions into the TenantCluster CRD) and
// writes the same files into every output directory, removing CRD files
// that controller-gen no longer produces. hack/generate runs it.
//
//	go run ./internal/install/gencrds IN_DIR OUT_DIR...
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"kubinception.dev/kubinception/internal/install"
)

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: gencrds IN_DIR OUT_DIR...")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "gencrds: %v\n", err)
		os.Exit(1)
	}
}

func run(in string, outs []string) error {
	names, err := filepath.Glob(filepath.Join(in, "*.yaml"))
	if err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("no CRD files in %s", in)
	}
	sort.Strings(names)
	files := map[string][]byte{}
	for _, name := range names {
		data, err := os.ReadFile(name)
		if err != nil {
			return err
		}
		if files[filepath.Base(name)], err = install.FinalizeCRD(data); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	for _, dir := range outs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		old, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
		if err != nil {
			return err
		}
		for _, o := range old {
			if _, ok := files[filepath.Base(o)]; !ok {
				if err := os.Remove(o); err != nil {
					return err
				}
			}
		}
		for base, data := range files {
			if err := os.WriteFile(filepath.Join(dir, base), data, 0o644); err != nil {
				return err
			}
		}
		fmt.Printf("wrote %s to %s\n", strings.Join(sortedKeys(files), ", "), dir)
	}
	return nil
}

func sortedKeys(m map[string][]byte) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
