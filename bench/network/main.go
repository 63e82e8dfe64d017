// Command network measures what the node tunnel and the tenant load
// balancers cost: kubectl exec and logs latency through the tunnel
// (worker behind NAT) against a tenant without the tunnel (reachable
// worker, the API server dials the kubelet directly), kubectl
// port-forward throughput both ways, and the latency a tenant load
// balancer adds to an HTTP request against the same request sent to the
// Service's node port from the tenant's own network. Each pair is
// measured in the same run, interleaved. It writes a Markdown report
// (bench/results/network.md).
//
// Run as root from the repository: go run ./bench/network
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"kubinception.dev/kubinception/bench/internal/benchkit"
	"kubinception.dev/kubinception/internal/local/components"
	"kubinception.dev/kubinception/internal/local/worker"
)

func main() {
	root := flag.String("root", "/var/lib/kubinception-bench", "admin cluster state directory used for the measurement")
	runs := flag.Int("runs", 30, "samples of each latency")
	out := flag.String("out", "bench/results/network.md", "report file")
	flag.Parse()
	if err := run(*root, *runs, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// tenant is one of the two tenants measured.
type tenant struct {
	name, kubeconfig string
}

type env struct {
	o       *benchkit.Operator
	kubectl string
	dir     string
}

func (e *env) kube(t tenant, args ...string) (string, error) {
	return benchkit.Run(nil, e.kubectl, append([]string{"--kubeconfig", t.kubeconfig}, args...)...)
}

func (e *env) timedKube(t tenant, args ...string) (time.Duration, error) {
	return benchkit.Timed(nil, e.kubectl, append([]string{"--kubeconfig", t.kubeconfig}, args...)...)
}

func run(root string, runs int, out string) error {
	start := time.Now()
	load0 := benchkit.LoadAverage()
	o, err := benchkit.UpWithOperator(root)
	defer o.Down()
	if err != nil {
		return err
	}
	bins, err := (&components.Builder{CacheDir: components.DefaultCacheDir()}).Lookup(o.Config.KubernetesVersion)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "kubinception-bench-network-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e := &env{o: o, kubectl: bins.Component("kubectl"), dir: dir}

	// bt: the tunnel (default), its worker behind NAT. bd: no tunnel, a
	// reachable worker: the API server dials the kubelet itself.
	bt, bd := tenant{name: "bt"}, tenant{name: "bd"}
	for _, t := range []*tenant{&bt, &bd} {
		if _, err := benchkit.Run(nil, o.Bin, "create", "cluster", t.name, "--wait", "--kubeconfig", o.Kubeconfig); err != nil {
			return err
		}
	}
	if _, err := benchkit.Run(nil, e.kubectl, "--kubeconfig", o.Kubeconfig, "patch", "tenantcluster", "bd", "--type=merge",
		"-p", `{"spec":{"addons":{"tunnel":{"enabled":false}}}}`); err != nil {
		return err
	}
	if err := o.Kubinception("node", "add", "bt"); err != nil {
		return err
	}
	if err := o.Kubinception("node", "add", "bd", "--reachable"); err != nil {
		return err
	}
	for _, t := range []*tenant{&bt, &bd} {
		kc, err := benchkit.Run(nil, o.Bin, "kubeconfig", t.name, "--kubeconfig", o.Kubeconfig)
		if err != nil {
			return err
		}
		t.kubeconfig = filepath.Join(dir, t.name+".kubeconfig")
		if err := os.WriteFile(t.kubeconfig, []byte(kc), 0o600); err != nil {
			return err
		}
		if err := e.deployWeb(*t); err != nil {
			return err
		}
	}

	r := report{runs: runs}
	// kubectl exec and logs, the two tenants in turn.
	for i := range runs {
		for _, t := range []tenant{bt, bd} {
			d, err := e.timedKube(t, "exec", "deploy/web", "--", "/usr/local/bin/tinyhost", "get", "http://127.0.0.1:8080/", "1")
			if err != nil {
				return err
			}
			r.exec[idx(t)] = append(r.exec[idx(t)], d)
			d, err = e.timedKube(t, "logs", "deploy/web", "--tail=1")
			if err != nil {
				return err
			}
			r.logs[idx(t)] = append(r.logs[idx(t)], d)
		}
		if i%10 == 9 {
			fmt.Printf("exec and logs: %d of %d rounds\n", i+1, runs)
		}
	}
	// port-forward throughput.
	for range 3 {
		for _, t := range []tenant{bt, bd} {
			mbps, err := e.portForward(t, 64<<20)
			if err != nil {
				return err
			}
			r.forward[idx(t)] = append(r.forward[idx(t)], mbps)
		}
	}
	// The load balancer against the node port, from the tenant's network.
	if err := e.loadBalancer(bt, runs, &r); err != nil {
		return err
	}
	r.took, r.load0, r.load1 = time.Since(start), load0, benchkit.LoadAverage()
	return benchkit.WriteReport(out, r.String())
}

func (e *env) deployWeb(t tenant) error {
	images := e.o.Config.Images
	if _, err := e.kube(t, "create", "deployment", "web", "--image="+images.Tinyhost(), "--", "/usr/local/bin/tinyhost", "serve", "8080"); err != nil {
		return err
	}
	if _, err := e.kube(t, "patch", "deployment", "web", "--type=json",
		"-p", `[{"op":"add","path":"/spec/template/spec/containers/0/imagePullPolicy","value":"Never"}]`); err != nil {
		return err
	}
	_, err := e.kube(t, "rollout", "status", "deployment/web", "--timeout=180s")
	return err
}

var forwarding = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+)`)

// portForward reads n bytes through kubectl port-forward and returns
// MiB/s.
func (e *env) portForward(t tenant, n int) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.kubectl, "--kubeconfig", t.kubeconfig, "port-forward", "deploy/web", ":8080", "--address", "127.0.0.1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	sc := bufio.NewScanner(stdout)
	port := ""
	for sc.Scan() {
		if m := forwarding.FindStringSubmatch(sc.Text()); m != nil {
			port = m[1]
			break
		}
	}
	if port == "" {
		return 0, errors.New("kubectl port-forward did not start")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	begin := time.Now()
	resp, err := http.Get("http://127.0.0.1:" + port + "/bytes?n=" + strconv.Itoa(n))
	if err != nil {
		return 0, err
	}
	got, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || got != int64(n) {
		return 0, fmt.Errorf("port-forward read %d of %d bytes: %v", got, n, err)
	}
	return float64(n) / (1 << 20) / time.Since(begin).Seconds(), nil
}

// curlTime is curl's own total time of one GET (no process start), run in
// the network namespace netns when not empty.
func curlTime(netns, url string) (time.Duration, error) {
	args := []string{"-sS", "-o", "/dev/null", "-m", "10", "-w", "%{time_total}", url}
	name := "curl"
	if netns != "" {
		args = append([]string{"netns", "exec", netns, "curl"}, args...)
		name = "ip"
	}
	out, err := benchkit.Run(nil, name, args...)
	if err != nil {
		return 0, err
	}
	s, err := strconv.ParseFloat(strings.TrimSpace(out), 64)
	if err != nil {
		return 0, fmt.Errorf("curl time %q: %w", out, err)
	}
	return time.Duration(s * float64(time.Second)), nil
}

func (e *env) loadBalancer(t tenant, runs int, r *report) error {
	if _, err := e.kube(t, "expose", "deployment/web", "--name=web-lb", "--type=LoadBalancer", "--port=80", "--target-port=8080"); err != nil {
		return err
	}
	var ip, nodePort string
	deadline := time.Now().Add(2 * time.Minute)
	for ip == "" {
		if time.Now().After(deadline) {
			return errors.New("the LoadBalancer Service got no address in 2 minutes")
		}
		time.Sleep(500 * time.Millisecond)
		out, err := e.kube(t, "get", "service", "web-lb", "-o", "jsonpath={.status.loadBalancer.ingress[0].ip} {.spec.ports[0].nodePort}")
		if err != nil {
			return err
		}
		if f := strings.Fields(out); len(f) == 2 {
			ip, nodePort = f[0], f[1]
		}
	}
	nodeIP, err := e.kube(t, "get", "nodes", "-o", `jsonpath={.items[0].status.addresses[?(@.type=="InternalIP")].address}`)
	if err != nil {
		return err
	}
	// The worker's network namespace: the first worker of the tenant's
	// segment.
	workers, err := (worker.Layout{Root: e.o.Root}).List("default/" + t.name)
	if err != nil || len(workers) == 0 {
		return fmt.Errorf("the worker of %s: %v", t.name, err)
	}
	netns := workers[0].NetNS()
	// Warm up both paths until the load balancer has a healthy node.
	for i := 0; ; i++ {
		if _, err := curlTime("", "http://"+ip+"/"); err == nil {
			break
		} else if i == 120 {
			return fmt.Errorf("the load balancer at %s does not answer: %w", ip, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	for range runs {
		d, err := curlTime("", "http://"+ip+"/")
		if err != nil {
			return err
		}
		r.lb = append(r.lb, d)
		d, err = curlTime(netns, "http://"+nodeIP+":"+nodePort+"/")
		if err != nil {
			return err
		}
		r.nodePort = append(r.nodePort, d)
	}
	return nil
}

// idx is 0 for the tenant with the tunnel, 1 for the one without.
func idx(t tenant) int {
	if t.name == "bt" {
		return 0
	}
	return 1
}

type report struct {
	runs int
	// exec, logs and forward: [0] through the tunnel, [1] direct.
	exec, logs   [2][]time.Duration
	forward      [2][]float64
	lb, nodePort []time.Duration
	took         time.Duration
	load0, load1 string
}

func (r report) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Node tunnel and tenant load balancer benchmark

Measured %s on %s; load average (1, 5, 15 min) %s at the start and %s at
the end; the whole run took %s:

    go run ./bench/network

One local admin cluster, two tenants, one worker each: *tunnel* (the
default: the worker is behind NAT, the API server reaches its kubelet
through the node tunnel) and *direct* (the tunnel addon off, a reachable
worker: the API server dials the kubelet itself). Every pair below was
measured in the same run, the two sides in turn.

| what | through the tunnel | direct | ratio |
|---|---|---|---|
`, benchkit.Now(), benchkit.Machine(), r.load0, r.load1, r.took.Round(time.Second))
	for _, row := range []struct {
		name string
		v    [2][]time.Duration
	}{
		{fmt.Sprintf("kubectl exec (a command printing a line), median of %d", r.runs), r.exec},
		{fmt.Sprintf("kubectl logs --tail=1, median of %d", r.runs), r.logs},
	} {
		t, d := benchkit.Median(row.v[0]), benchkit.Median(row.v[1])
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f |\n", row.name, benchkit.Millis(t), benchkit.Millis(d), benchkit.Ratio(t, d))
		t, d = benchkit.Percentile(row.v[0], 90), benchkit.Percentile(row.v[1], 90)
		fmt.Fprintf(&b, "| the same, 90th percentile | %s | %s | %.2f |\n", benchkit.Millis(t), benchkit.Millis(d), benchkit.Ratio(t, d))
	}
	t, d := benchkit.Median(r.forward[0]), benchkit.Median(r.forward[1])
	fmt.Fprintf(&b, "| kubectl port-forward, 64 MiB read, median of 3 | %.1f MiB/s | %.1f MiB/s | %.2f |\n", t, d, t/d)
	lb, np := benchkit.Median(r.lb), benchkit.Median(r.nodePort)
	fmt.Fprintf(&b, `
kubectl's own start (a process, a kubeconfig, discovery from its cache)
is part of every exec and logs sample on both sides.

## The load balancer

The tenant with the tunnel exposes the same web pod with a Service of
type LoadBalancer. One HTTP GET on a new connection, timed by curl itself
(no process start): from the admin host to the load balancer's address
(kube-proxy on the admin node, the load balancer pod, the tunnel, the
node port), against the same GET to the node port from the worker's own
network namespace (what a client inside the customer's network gets).
Median of %d each, interleaved:

| path | median | 90th percentile |
|---|---|---|
| through the load balancer | %s | %s |
| floor: the node port from the tenant's network | %s | %s |
| **added by the load balancer** | **%s** (ratio %.2f) | |
`, r.runs, benchkit.Millis(lb), benchkit.Millis(benchkit.Percentile(r.lb, 90)), benchkit.Millis(np), benchkit.Millis(benchkit.Percentile(r.nodePort, 90)), benchkit.Millis(lb-np), benchkit.Ratio(lb, np))
	return b.String()
}
