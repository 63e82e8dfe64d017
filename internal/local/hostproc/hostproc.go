package hostproc

import (
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
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

// KillCgroup kills every process in a cgroup tree, repeating while new
// ones appear, and returns how many it signalled.
func KillCgroup(cgroup string) int {
	total := 0
	for attempt := 0; attempt < 20; attempt++ {
		killed := 0
		for _, dir := range CgroupDirs(cgroup) {
			data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
			for _, f := range strings.Fields(string(data)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 && syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
			}
		}
		total += killed
		if killed == 0 {
			return total
		}
		time.Sleep(100 * time.Millisecond)
	}
	return total
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

// Mentioning lists live processes, other than this one, whose command line
// contains s.
func Mentioning(s string) []int {
	var pids []int
	entries, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.Contains(strings.ReplaceAll(string(cmdline), "\x00", " "), s) {
			pids = append(pids, pid)
		}
	}
	return pids
}
