package components

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"kubinception.dev/kubinception/internal/release"
)

//go:embed source/kube.go.tmpl
var kubeMain []byte

//go:embed source/etcd.go.tmpl
var etcdMain []byte

//go:embed source/tinyhost.go.tmpl
var tinyhostMain []byte

//go:embed source/coredns.go.tmpl
var corednsMain []byte

//go:embed source/calico.go.tmpl
var calicoMain []byte

// CalicoCommands are the names the Calico multi-call binary answers to.
var CalicoCommands = []string{"calico-felix", "install", "calico-cni-token"}

// KubeComponents are the names the Kubernetes multi-call binary answers to.
var KubeComponents = []string{
	"kube-apiserver", "kube-controller-manager", "kube-scheduler",
	"kubelet", "kube-proxy", "kubectl", "kubeadm",
}

// Builder builds Kubernetes components, etcd and tinyhost from their Go
// modules into a cache keyed by version and by everything else that goes
// into the build, so a second build with a warm cache is only a check.
type Builder struct {
	// CacheDir holds sources, build stamps and binaries.
	CacheDir string
	// Out receives progress meant for a person.
	Out io.Writer
	// Go is the go command; "go" when empty.
	Go string
}

// Binaries locates one built set of components.
type Binaries struct {
	// KubernetesVersion and EtcdVersion are what was built.
	KubernetesVersion string
	EtcdVersion       string
	// Kube is the Kubernetes multi-call binary; KubeDir holds it with a
	// symlink per component name.
	Kube    string
	KubeDir string
	// Etcd is etcd and etcdctl in one binary.
	Etcd string
	// Tinyhost is the pause and test-workload binary.
	Tinyhost string
	// CoreDNS is the cluster DNS server, and CoreDNSVersion its release.
	CoreDNS        string
	CoreDNSVersion string
	// Calico is Felix (the NetworkPolicy enforcer) and the Calico CNI
	// plugin in one binary, with a symlink per command beside it.
	Calico        string
	CalicoVersion string
}

// Component returns the path of a Kubernetes component's entry point, such
// as "kubectl", inside the cache.
func (b Binaries) Component(name string) string { return filepath.Join(b.KubeDir, name) }

// DefaultCacheDir is where builds are cached unless KUBINCEPTION_CACHE says
// otherwise: it survives between runs on the same machine.
func DefaultCacheDir() string {
	if d := os.Getenv("KUBINCEPTION_CACHE"); d != "" {
		return d
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "kubinception")
	}
	return filepath.Join(os.TempDir(), "kubinception-cache")
}

// Build builds (or finds in the cache) every binary for kubernetesVersion.
func (b *Builder) Build(ctx context.Context, kubernetesVersion string) (Binaries, error) {
	if err := release.ValidateKubernetesVersion(kubernetesVersion); err != nil {
		return Binaries{}, err
	}
	if _, err := exec.LookPath(b.goCmd()); err != nil {
		return Binaries{}, fmt.Errorf("the go command is needed to build Kubernetes components and was not found: install Go 1.25 or newer and put it on PATH")
	}
	kube, err := b.buildKube(ctx, kubernetesVersion)
	if err != nil {
		return Binaries{}, err
	}
	etcd, err := b.buildEtcd(ctx)
	if err != nil {
		return Binaries{}, err
	}
	tiny, err := b.buildTinyhost(ctx)
	if err != nil {
		return Binaries{}, err
	}
	coredns, err := b.buildCoreDNS(ctx)
	if err != nil {
		return Binaries{}, err
	}
	calico, err := b.buildCalico(ctx)
	if err != nil {
		return Binaries{}, err
	}
	return Binaries{
		Calico:            calico,
		CalicoVersion:     release.CalicoVersion,
		CoreDNS:           coredns,
		CoreDNSVersion:    release.CoreDNSVersion,
		KubernetesVersion: kubernetesVersion,
		EtcdVersion:       release.EtcdVersion,
		Kube:              kube,
		KubeDir:           filepath.Dir(kube),
		Etcd:              etcd,
		Tinyhost:          tiny,
	}, nil
}

// Lookup returns the cached binaries for kubernetesVersion without building
// anything, or an error saying how to build them.
func (b *Builder) Lookup(kubernetesVersion string) (Binaries, error) {
	bins := Binaries{
		KubernetesVersion: kubernetesVersion,
		EtcdVersion:       release.EtcdVersion,
		KubeDir:           filepath.Join(b.CacheDir, "kubernetes-"+kubernetesVersion, "bin"),
		Etcd:              filepath.Join(b.CacheDir, "etcd-"+release.EtcdVersion, "bin", "etcd"),
		Tinyhost:          filepath.Join(b.CacheDir, "tinyhost", "bin", "tinyhost"),
		CoreDNS:           filepath.Join(b.CacheDir, "coredns-"+release.CoreDNSVersion, "bin", "coredns"),
		CoreDNSVersion:    release.CoreDNSVersion,
		Calico:            filepath.Join(b.CacheDir, "calico-"+release.CalicoVersion, "bin", "calico"),
		CalicoVersion:     release.CalicoVersion,
	}
	bins.Kube = filepath.Join(bins.KubeDir, "kube")
	for _, p := range []string{bins.Kube, bins.Etcd, bins.Tinyhost, bins.CoreDNS, bins.Calico} {
		if _, err := os.Stat(p); err != nil {
			return Binaries{}, fmt.Errorf("components for Kubernetes %s are not built (%s is missing): run kubinception build components --version %s", kubernetesVersion, p, kubernetesVersion)
		}
	}
	return bins, nil
}

func (b *Builder) goCmd() string {
	if b.Go != "" {
		return b.Go
	}
	return "go"
}

func (b *Builder) printf(format string, args ...any) {
	if b.Out != nil {
		fmt.Fprintf(b.Out, format, args...)
	}
}

// buildKube builds the Kubernetes multi-call binary for version.
func (b *Builder) buildKube(ctx context.Context, version string) (string, error) {
	dir := filepath.Join(b.CacheDir, "kubernetes-"+version)
	ldflags := kubeLDFlags(version)
	spec := buildSpec{
		name:    "Kubernetes " + version,
		dir:     dir,
		binary:  "kube",
		main:    kubeMain,
		ldflags: ldflags,
		links:   KubeComponents,
		goMod: func(ctx context.Context) ([]byte, error) {
			return b.kubeGoMod(ctx, version)
		},
		hint: "8 to 15 minutes on 2 cores with an empty Go cache",
	}
	return b.build(ctx, spec)
}

func kubeLDFlags(version string) string {
	major, minor := "1", strings.SplitN(strings.TrimPrefix(version, "v1."), ".", 2)[0]
	pkg := "k8s.io/component-base/version"
	// A fixed order keeps the flags, and with them the build stamp, stable.
	flags := []string{"-s", "-w"}
	for _, kv := range [][2]string{
		{"buildDate", "1970-01-01T00:00:00Z"},
		{"gitCommit", "0000000000000000000000000000000000000000"},
		{"gitMajor", major},
		{"gitMinor", minor},
		{"gitTreeState", "clean"},
		{"gitVersion", version},
	} {
		flags = append(flags, "-X", pkg+"."+kv[0]+"="+kv[1])
	}
	return strings.Join(flags, " ")
}

// kubeGoMod writes the go.mod of the multi-call binary: it requires
// k8s.io/kubernetes at version and replaces every staging module with its
// published release, as k8s.io/kubernetes' own go.mod lists them.
func (b *Builder) kubeGoMod(ctx context.Context, version string) ([]byte, error) {
	upstream, err := b.downloadGoMod(ctx, "k8s.io/kubernetes", version)
	if err != nil {
		return nil, err
	}
	staging := release.StagingVersion(version)
	var out bytes.Buffer
	fmt.Fprintf(&out, "module kubinception.dev/components/kube\n\n")
	var replaces []string
	sc := bufio.NewScanner(bytes.NewReader(upstream))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "go ") || strings.HasPrefix(line, "godebug "):
			fmt.Fprintln(&out, line)
		case strings.Contains(line, "=> ./staging/"):
			mod := strings.Fields(line)[0]
			replaces = append(replaces, fmt.Sprintf("\t%s => %s %s", mod, mod, staging))
		}
	}
	if len(replaces) == 0 {
		return nil, fmt.Errorf("k8s.io/kubernetes %s: its go.mod lists no staging modules, so it cannot be built as a module", version)
	}
	fmt.Fprintf(&out, "\nrequire k8s.io/kubernetes %s\n\nreplace (\n%s\n)\n", version, strings.Join(replaces, "\n"))
	return out.Bytes(), nil
}

// downloadGoMod fetches the go.mod of module@version from the module proxy,
// turning "no such version" into an error that lists what exists.
func (b *Builder) downloadGoMod(ctx context.Context, module, version string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, b.goCmd(), "mod", "download", "-json", module+"@"+version)
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
	cmd.Dir = os.TempDir()
	out, err := cmd.Output()
	var info struct {
		GoMod string
		Error string
	}
	_ = json.Unmarshal(out, &info)
	if err != nil || info.Error != "" || info.GoMod == "" {
		reason := info.Error
		if reason == "" && err != nil {
			reason = err.Error()
		}
		return nil, fmt.Errorf("cannot fetch %s %s from the Go module proxy (%s): check the version exists (go list -m -versions %s) and that the proxy is reachable", module, version, strings.TrimSpace(reason), module)
	}
	return os.ReadFile(info.GoMod)
}

func (b *Builder) buildEtcd(ctx context.Context) (string, error) {
	goMod := fmt.Sprintf("module kubinception.dev/components/etcd\n\ngo 1.25.0\n\nrequire (\n\tgo.etcd.io/etcd/server/v3 %s\n\tgo.etcd.io/etcd/etcdctl/v3 %s\n)\n", release.EtcdVersion, release.EtcdVersion)
	return b.build(ctx, buildSpec{
		name:    "etcd " + release.EtcdVersion,
		dir:     filepath.Join(b.CacheDir, "etcd-"+release.EtcdVersion),
		binary:  "etcd",
		main:    etcdMain,
		ldflags: "-s -w",
		links:   []string{"etcdctl"},
		goMod:   func(context.Context) ([]byte, error) { return []byte(goMod), nil },
		hint:    "about 2 minutes with an empty Go cache",
	})
}

func (b *Builder) buildCoreDNS(ctx context.Context) (string, error) {
	goMod := fmt.Sprintf("module kubinception.dev/components/coredns\n\ngo 1.25.0\n\nrequire github.com/coredns/coredns %s\n", release.CoreDNSVersion)
	return b.build(ctx, buildSpec{
		name:    "CoreDNS " + release.CoreDNSVersion,
		dir:     filepath.Join(b.CacheDir, "coredns-"+release.CoreDNSVersion),
		binary:  "coredns",
		main:    corednsMain,
		ldflags: "-s -w",
		goMod:   func(context.Context) ([]byte, error) { return []byte(goMod), nil },
		hint:    "2 to 5 minutes with an empty Go cache",
	})
}

// buildCalico builds Felix and the Calico CNI plugin from Calico's module.
// Its go.mod keeps upstream's replace block (Kubernetes libraries pinned to
// the release Calico was tested with) except the nested api module, which
// is required at its published version instead. Upstream imports Windows-only
// modules the proxy does not serve; "tidy -e" leaves them out, and the Linux
// build never needs them.
func (b *Builder) buildCalico(ctx context.Context) (string, error) {
	return b.build(ctx, buildSpec{
		name:     "Calico " + release.CalicoVersion,
		dir:      filepath.Join(b.CacheDir, "calico-"+release.CalicoVersion),
		binary:   "calico",
		main:     calicoMain,
		ldflags:  "-s -w -X github.com/projectcalico/calico/felix/buildinfo.GitVersion=" + release.CalicoVersion,
		links:    CalicoCommands,
		tidyArgs: []string{"-e"},
		goMod:    b.calicoGoMod,
		hint:     "4 to 8 minutes with an empty Go cache",
	})
}

func (b *Builder) calicoGoMod(ctx context.Context) ([]byte, error) {
	const module = "github.com/projectcalico/calico"
	upstream, err := b.downloadGoMod(ctx, module, release.CalicoModuleVersion)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "module kubinception.dev/components/calico\n\n")
	var replaces []string
	inReplace := false
	sc := bufio.NewScanner(bytes.NewReader(upstream))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "go "):
			fmt.Fprintln(&out, line)
		case line == "replace (":
			inReplace = true
		case inReplace && line == ")":
			inReplace = false
		case inReplace && strings.Contains(line, "=>") && !strings.HasPrefix(line, "//") && !strings.Contains(line, "=> ./"):
			replaces = append(replaces, "\t"+line)
		}
	}
	if len(replaces) == 0 {
		return nil, fmt.Errorf("%s %s: its go.mod has no replace block; the pinned Kubernetes libraries cannot be found", module, release.CalicoModuleVersion)
	}
	fmt.Fprintf(&out, "\nrequire (\n\t%s %s\n\tgithub.com/projectcalico/api %s\n)\n\nreplace (\n%s\n)\n",
		module, release.CalicoModuleVersion, release.CalicoAPIVersion, strings.Join(replaces, "\n"))
	return out.Bytes(), nil
}

func (b *Builder) buildTinyhost(ctx context.Context) (string, error) {
	return b.build(ctx, buildSpec{
		name:    "tinyhost",
		dir:     filepath.Join(b.CacheDir, "tinyhost"),
		binary:  "tinyhost",
		main:    tinyhostMain,
		ldflags: "-s -w",
		links:   []string{"pause"},
		goMod: func(context.Context) ([]byte, error) {
			return []byte("module kubinception.dev/components/tinyhost\n\ngo 1.25.0\n"), nil
		},
		hint: "seconds",
	})
}

// buildSpec describes one cached build.
type buildSpec struct {
	name    string
	dir     string
	binary  string
	main    []byte
	ldflags string
	links   []string
	goMod   func(context.Context) ([]byte, error)
	hint    string
	// tidyArgs are extra arguments to go mod tidy.
	tidyArgs []string
}

// build compiles spec unless the stamp beside the binary records the same
// inputs. The binary is written under a temporary name and renamed, so an
// interrupted build never leaves a truncated binary that looks complete.
func (b *Builder) build(ctx context.Context, spec buildSpec) (string, error) {
	binDir := filepath.Join(spec.dir, "bin")
	binary := filepath.Join(binDir, spec.binary)
	stampPath := filepath.Join(spec.dir, "stamp")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return "", fmt.Errorf("create build cache %s: %w", spec.dir, err)
	}
	unlock, err := lockFile(filepath.Join(spec.dir, "lock"))
	if err != nil {
		return "", err
	}
	defer unlock()

	goVersion, err := b.goVersion(ctx)
	if err != nil {
		return "", err
	}
	// The stamp covers the source, the flags and the toolchain; go.mod is
	// derived from the version, which is part of the directory name.
	sum := sha256.New()
	for _, part := range [][]byte{spec.main, []byte(spec.ldflags), []byte(goVersion), []byte(strings.Join(spec.links, ","))} {
		sum.Write(part)
		sum.Write([]byte{0})
	}
	stamp := hex.EncodeToString(sum.Sum(nil))
	if old, err := os.ReadFile(stampPath); err == nil && string(old) == stamp {
		if _, err := os.Stat(binary); err == nil {
			b.printf("%s: up to date (%s)\n", spec.name, binary)
			return binary, nil
		}
	}

	start := time.Now()
	b.printf("%s: building (%s)\n", spec.name, spec.hint)
	srcDir := filepath.Join(spec.dir, "src")
	if err := os.MkdirAll(srcDir, 0o755); err != nil {
		return "", err
	}
	goMod, err := spec.goMod(ctx)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(srcDir, "go.mod"), goMod, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(srcDir, "main.go"), spec.main, 0o644); err != nil {
		return "", err
	}
	if err := b.goRun(ctx, srcDir, append([]string{"mod", "tidy"}, spec.tidyArgs...)...); err != nil {
		return "", fmt.Errorf("%s: resolve modules: %w", spec.name, err)
	}
	tmp := binary + ".partial"
	if err := b.goRun(ctx, srcDir, "build", "-trimpath", "-ldflags", spec.ldflags, "-o", tmp, "."); err != nil {
		return "", fmt.Errorf("%s: build: %w", spec.name, err)
	}
	if err := os.Rename(tmp, binary); err != nil {
		return "", err
	}
	for _, link := range spec.links {
		p := filepath.Join(binDir, link)
		_ = os.Remove(p)
		if err := os.Symlink(spec.binary, p); err != nil {
			return "", err
		}
	}
	if err := os.WriteFile(stampPath, []byte(stamp), 0o644); err != nil {
		return "", err
	}
	b.printf("%s: built in %s (%s)\n", spec.name, time.Since(start).Round(time.Second), binary)
	return binary, nil
}

func (b *Builder) goVersion(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, b.goCmd(), "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOVERSION: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// goRun runs a go command for a static build, keeping its output for the
// error message.
func (b *Builder) goRun(ctx context.Context, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, b.goCmd(), args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod -buildvcs=false")
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 40))
	}
	return nil
}

func tail(s string, lines int) string {
	parts := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(parts) > lines {
		parts = parts[len(parts)-lines:]
	}
	return strings.Join(parts, "\n")
}

// lockFile takes an exclusive lock so two builds of the same entry do not
// write over each other; the second waits for the first and then finds its
// result in the cache.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Built lists the Kubernetes versions whose components are in the cache.
func (b *Builder) Built() []Binaries {
	dirs, _ := filepath.Glob(filepath.Join(b.CacheDir, "kubernetes-v*"))
	var out []Binaries
	for _, d := range dirs {
		v := strings.TrimPrefix(filepath.Base(d), "kubernetes-")
		if release.ValidateKubernetesVersion(v) != nil {
			continue
		}
		if bins, err := b.Lookup(v); err == nil {
			out = append(out, bins)
		}
	}
	return out
}
