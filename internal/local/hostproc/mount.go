package hostproc

import (
	"os"
	"sort"
	"strconv"
	"strings"
)

// MountPoints lists this mount namespace's mount points that are dir or
// lie below it, deepest first (the order to detach them in).
func MountPoints(dir string) ([]string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	mounts := mountPointsIn(string(data), dir)
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i]) > len(mounts[j]) })
	return mounts, nil
}

// IsMountPoint reports whether path is a mount point in this mount
// namespace.
func IsMountPoint(path string) bool {
	mounts, err := MountPoints(path)
	if err != nil {
		return false
	}
	for _, m := range mounts {
		if m == path {
			return true
		}
	}
	return false
}

// mountPointsIn parses mountinfo and returns the mount points that are dir
// or lie below it.
func mountPointsIn(mountinfo, dir string) []string {
	var out []string
	for _, line := range strings.Split(mountinfo, "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		if target := unescapeMount(f[4]); Within(target, dir) {
			out = append(out, target)
		}
	}
	return out
}

// unescapeMount decodes the octal escapes (\040 for a space) mountinfo
// uses in paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
