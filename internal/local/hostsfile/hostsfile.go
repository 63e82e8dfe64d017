// Package hostsfile keeps a block of names in /etc/hosts: where no DNS
// carries the front door's names (this machine), the host, its local
// workers (which share the host's /etc/hosts) and their host-network pods
// resolve tenants' front-door names through it.
package hostsfile

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Markers around the block this package owns; lines outside it are
// never touched.
const (
	begin = "# BEGIN kubinception front door (kubinception frontdoor hosts)"
	end   = "# END kubinception front door"
)

// Render returns content with the block replaced by one line per name
// (sorted, so an unchanged set rewrites nothing), or removed when names
// is empty.
func Render(content string, names map[string]string) string {
	var out []string
	inBlock := false
	for _, line := range strings.Split(strings.TrimRight(content, "\n"), "\n") {
		switch {
		case line == begin:
			inBlock = true
		case line == end:
			inBlock = false
		case !inBlock:
			out = append(out, line)
		}
	}
	if len(names) > 0 {
		keys := make([]string, 0, len(names))
		for n := range names {
			keys = append(keys, n)
		}
		sort.Strings(keys)
		out = append(out, begin)
		for _, n := range keys {
			out = append(out, names[n]+"\t"+n)
		}
		out = append(out, end)
	}
	return strings.Join(out, "\n") + "\n"
}

// Sync writes the block into the file at path, replacing it atomically
// (in place when the file is a bind mount, as /etc/hosts is in
// containers). It reports whether the file changed.
func Sync(path string, names map[string]string) (bool, error) {
	old, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	content := Render(string(old), names)
	if content == string(old) {
		return false, nil
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".hosts-*")
	if err == nil {
		_, err = tmp.WriteString(content)
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err == nil {
			err = os.Chmod(tmp.Name(), 0o644)
		}
		if err == nil {
			err = os.Rename(tmp.Name(), path)
		}
		if err != nil {
			os.Remove(tmp.Name())
		}
	}
	if err != nil {
		// A bind-mounted file cannot be renamed over: write in place.
		if werr := os.WriteFile(path, []byte(content), 0o644); werr != nil {
			return false, fmt.Errorf("write %s: %w", path, werr)
		}
	}
	return true, nil
}
