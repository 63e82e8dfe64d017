package hostproc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
)

// CgroupDirs lists a cgroup (a path such as "kubepods") and everything
// below it in every cgroup v1 controller, deepest first.
func CgroupDirs(cgroup string) []string {
	var dirs []string
	ctrls, _ := filepath.Glob("/sys/fs/cgroup/*")
	for _, ctrl := range ctrls {
		base := filepath.Join(ctrl, cgroup)
		if _, err := os.Stat(base); err != nil {
			continue
		}
		_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
	}
	sort.Slice(dirs, func(i, j int) bool { return len(dirs[i]) > len(dirs[j]) })
	return dirs
}

// CgroupPIDs lists the processes in a cgroup tree.
func CgroupPIDs(cgroup string) []int {
	seen := map[int]bool{}
	var pids []int
	for _, dir := range CgroupDirs(cgroup) {
		data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		for _, f := range strings.Fields(string(data)) {
			if pid, err := strconv.Atoi(f); err == nil && pid > 1 && !seen[pid] {
				seen[pid] = true
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// KillCgroup kills every process in a cgroup tree, repeating while new
// ones appear, until the tree is empty or timeout passes.
func KillCgroup(ctx context.Context, cgroup string, timeout time.Duration) error {
	var left []int
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		left = CgroupPIDs(cgroup)
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		return len(left) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("processes %v in cgroup %s still run after %s: %w", left, cgroup, timeout, err)
	}
	return nil
}

// RemoveCgroup removes a cgroup tree whose processes are gone.
func RemoveCgroup(cgroup string) error {
	var errs []error
	for _, dir := range CgroupDirs(cgroup) {
		if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
