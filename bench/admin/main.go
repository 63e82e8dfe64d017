// Command admin measures the local admin cluster: component build time
// with a cold and a warm cache, `admin up` time with warm caches (fresh
// state and resumed after down), and the memory the admin plane holds once
// idle. It writes a Markdown report (bench/results/admin.md by default).
//
// Run it as root from the repository: go run ./bench/admin [-cold]
// -cold also measures a build with empty Go and component caches (it
// downloads nothing new but recompiles Kubernetes: 8-15 minutes).
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/local/hostproc"
)

func main() {
	cold := flag.Bool("cold", false, "also measure a build with empty caches")
	out := flag.String("out", "bench/results/admin.md", "report file")
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	idle := flag.Duration("idle", 60*time.Second, "how long the cluster idles before memory is read")
	flag.Parse()
	if err := run(*cold, *out, *root, *idle); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type row struct{ what, value, note string }

func run(cold bool, out, root string, idle time.Duration) error {
	tmp, err := os.MkdirTemp("", "kubinception-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	bin, err := benchkit.BuildBinary(tmp)
	if err != nil {
		return err
	}
	var rows []row
	if cold {
		env := []string{"GOCACHE=" + filepath.Join(tmp, "gocache"), "KUBINCEPTION_CACHE=" + filepath.Join(tmp, "cache")}
		d, err := benchkit.Timed(env, bin, "build", "components")
		if err != nil {
			return err
		}
		rows = append(rows, row{"component build, cold (empty Go build cache and component cache)", d.Round(time.Second).String(),
			"kube multi-call binary v1.35.4 + etcd + tinyhost; Go module cache kept (downloads excluded)"})
	}
	d, err := benchkit.Timed(nil, bin, "build", "components")
	if err != nil {
		return err
	}
	rows = append(rows, row{"component build, warm (cached)", d.Round(time.Millisecond).String(), "checks the cache stamps only"})

	if _, err := benchkit.Run(nil, bin, "admin", "down", "--purge", "--root", root); err != nil {
		return err
	}
	d, err = benchkit.Timed(nil, bin, "admin", "up", "--root", root)
	if err != nil {
		return err
	}
	rows = append(rows, row{"admin up, fresh state, warm caches", d.Round(100 * time.Millisecond).String(), "PKI, image import, 8 static pods, datastore auth"})
	if _, err := benchkit.Run(nil, bin, "admin", "down", "--root", root); err != nil {
		return err
	}
	d, err = benchkit.Timed(nil, bin, "admin", "up", "--root", root)
	if err != nil {
		return err
	}
	rows = append(rows, row{"admin up, resumed after down", d.Round(100 * time.Millisecond).String(), "data kept; images already imported"})
	d, err = benchkit.Timed(nil, bin, "admin", "up", "--root", root)
	if err != nil {
		return err
	}
	rows = append(rows, row{"admin up, already up (no-op)", d.Round(10 * time.Millisecond).String(), ""})

	time.Sleep(idle)
	mem := memory(root)
	var total int64
	names := make([]string, 0, len(mem))
	for n, v := range mem {
		names = append(names, n)
		total += v
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %d", n, mem[n]>>20))
	}
	rows = append(rows, row{fmt.Sprintf("memory of the admin plane, idle %s (RSS, MiB)", idle), strconv.FormatInt(total>>20, 10), strings.Join(parts, ", ")})
	if _, err := benchkit.Run(nil, bin, "admin", "down", "--purge", "--root", root); err != nil {
		return err
	}

	var b bytes.Buffer
	fmt.Fprintf(&b, "# Admin cluster benchmark\n\nMeasured %s on %s. One run; the machine is shared, so treat single figures as indicative.\n\n| what | result | note |\n|---|---|---|\n",
		benchkit.Now(), benchkit.Machine())
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s |\n", r.what, r.value, r.note)
	}
	return benchkit.WriteReport(out, b.String())
}

// memory sums resident memory by component over every process that belongs
// to the admin cluster under root: the supervisor, containerd, the kubelet,
// container shims and the static pods' processes.
func memory(root string) map[string]int64 {
	out := map[string]int64{}
	for _, p := range hostproc.Find(func(p hostproc.Process) bool { return component(p, root) != "" }) {
		out[component(p, root)] += hostproc.RSS(p.PID)
	}
	return out
}

// component names the part of the admin plane p belongs to, or is empty.
func component(p hostproc.Process, root string) string {
	base := p.Command()
	switch {
	case base == "containerd-shim-runc-v2" && p.NamesPath(root):
		return "shims"
	case base == "containerd" && p.NamesPath(root):
		return "containerd"
	case base == "kubinception" && slices.Contains(p.Args, "supervise") && p.NamesPath(root):
		return "supervisor"
	case base == "kubelet" && p.NamesPath(root):
		return "kubelet"
	case base == "etcd" && p.NamesPath(root):
		for _, a := range p.Args {
			if strings.HasPrefix(a, "--name=datastore") {
				return "datastore"
			}
		}
		return "etcd"
	case strings.HasPrefix(base, "kube-") && p.NamesPath(root), base == "kube-proxy":
		return base
	case base == "pause":
		return "pause"
	}
	return ""
}
