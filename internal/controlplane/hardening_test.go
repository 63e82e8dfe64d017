package controlplane

import (
	"path"
	"slices"
	"sort"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// podContainers lists every container of the rendered pod, sidecars first.
func podContainers(pod corev1.PodSpec) []corev1.Container {
	return append(slices.Clone(pod.InitContainers), pod.Containers...)
}

// flagPaths are the absolute paths a container's flags name.
func flagPaths(args []string) []string {
	var out []string
	for _, a := range args {
		_, v, ok := strings.Cut(a, "=")
		if ok && strings.HasPrefix(v, "/") {
			out = append(out, v)
		}
	}
	return out
}

// TestEachContainerMountsWhatItsFlagsName parses each container's flags:
// every file under the PKI mount a flag names is an item of the Secret
// view that container mounts, and that view holds nothing else. A flag
// changed without its mount (the component would crash on a missing
// file) or a key added to a view no flag reads fails here.
func TestEachContainerMountsWhatItsFlagsName(t *testing.T) {
	for _, tunnel := range []bool{true, false} {
		p := testParams()
		p.Tunnel = tunnel
		pod := Deployment(p).Spec.Template.Spec
		volumes := map[string]corev1.Volume{}
		for _, v := range pod.Volumes {
			volumes[v.Name] = v
		}
		want := map[string][]string{
			"kube-apiserver": APIServerFiles, "kube-controller-manager": ControllerManagerFiles,
			"kube-scheduler": SchedulerFiles, "tunnel": TunnelServerFiles,
		}
		for _, c := range podContainers(pod) {
			var named []string
			for _, f := range flagPaths(c.Args) {
				if strings.HasPrefix(f, PKIMountPath+"/") {
					named = append(named, strings.TrimPrefix(f, PKIMountPath+"/"))
				}
			}
			named = sortedUnique(named)
			var mounted []string
			for _, m := range c.VolumeMounts {
				if m.MountPath != PKIMountPath {
					continue
				}
				v := volumes[m.Name]
				if v.Secret == nil || v.Secret.SecretName != p.PKISecret || len(v.Secret.Items) == 0 {
					t.Fatalf("tunnel %v: container %s mounts volume %s at %s, not a view of items of %s", tunnel, c.Name, m.Name, PKIMountPath, p.PKISecret)
				}
				for _, it := range v.Secret.Items {
					if it.Key != it.Path {
						t.Errorf("tunnel %v: container %s sees key %s as %s", tunnel, c.Name, it.Key, it.Path)
					}
					mounted = append(mounted, it.Path)
				}
			}
			mounted = sortedUnique(mounted)
			if !slices.Equal(named, mounted) {
				t.Errorf("tunnel %v: container %s: flags name %v, mounted %v", tunnel, c.Name, named, mounted)
			}
			if !slices.Equal(sortedUnique(slices.Clone(want[c.Name])), mounted) {
				t.Errorf("tunnel %v: container %s mounts %v, its file list says %v", tunnel, c.Name, mounted, want[c.Name])
			}
			// Every other path a flag names lies under a mount of the
			// container (the encryption configuration, the tunnel's
			// socket and egress selector configuration).
			for _, f := range flagPaths(c.Args) {
				if !slices.ContainsFunc(c.VolumeMounts, func(m corev1.VolumeMount) bool { return strings.HasPrefix(f, m.MountPath+"/") }) {
					t.Errorf("tunnel %v: container %s: flag path %s is under no mount", tunnel, c.Name, f)
				}
			}
		}
	}
}

func sortedUnique(s []string) []string {
	sort.Strings(s)
	return slices.Compact(s)
}

// TestNoContainerSeesKeysItDoesNotUse names the keys that matter most.
func TestNoContainerSeesKeysItDoesNotUse(t *testing.T) {
	pod := Deployment(testParams()).Spec.Template.Spec
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	sees := func(c corev1.Container, file string) bool {
		for _, m := range c.VolumeMounts {
			if v := volumes[m.Name]; m.MountPath == PKIMountPath && v.Secret != nil &&
				slices.ContainsFunc(v.Secret.Items, func(it corev1.KeyToPath) bool { return it.Key == file }) {
				return true
			}
		}
		return false
	}
	for _, c := range podContainers(pod) {
		// The CA key signs node certificates: the controller manager's
		// alone. No container sees the operator's admin credential.
		if got := sees(c, FileCAKey); got != (c.Name == "kube-controller-manager") {
			t.Errorf("container %s sees %s: %v", c.Name, FileCAKey, got)
		}
		for _, f := range []string{"admin-client.crt", "admin-client.key", FileFrontProxyCAKey, FileTunnelAgentKey, FileTunnelClientKey} {
			if sees(c, f) {
				t.Errorf("container %s sees %s", c.Name, f)
			}
		}
		if c.Name == "kube-scheduler" && !slices.Equal(SchedulerFiles, []string{FileScheduler}) {
			t.Errorf("the scheduler sees %v, want only its kubeconfig", SchedulerFiles)
		}
	}
}

// TestContainersRunRestricted checks each container's effective security
// context: non-root, no capabilities, no escalation, RuntimeDefault
// seccomp, a read-only root filesystem with a writable scratch /tmp (or
// its socket directory), and keys readable by the group, not the world.
func TestContainersRunRestricted(t *testing.T) {
	pod := Deployment(testParams()).Spec.Template.Spec
	ps := pod.SecurityContext
	if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.FSGroup == nil || *ps.FSGroup != Group ||
		ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Fatalf("pod security context %+v", ps)
	}
	users := map[string]int64{}
	for _, c := range podContainers(pod) {
		sc := c.SecurityContext
		if sc == nil {
			t.Fatalf("container %s has no security context", c.Name)
		}
		if sc.RunAsUser == nil || *sc.RunAsUser == 0 || sc.RunAsGroup == nil || *sc.RunAsGroup == 0 || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
			t.Errorf("container %s may run as root: %+v", c.Name, sc)
		} else {
			users[c.Name] = *sc.RunAsUser
		}
		if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s may escalate privileges", c.Name)
		}
		if sc.Privileged != nil && *sc.Privileged {
			t.Errorf("container %s is privileged", c.Name)
		}
		if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 {
			t.Errorf("container %s capabilities %+v, want ALL dropped and none added", c.Name, sc.Capabilities)
		}
		if sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("container %s seccomp %+v", c.Name, sc.SeccompProfile)
		}
		if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
			t.Errorf("container %s has a writable root filesystem", c.Name)
		}
		for _, port := range c.Ports {
			if port.ContainerPort < 1024 {
				t.Errorf("container %s listens on %d, which needs NET_BIND_SERVICE", c.Name, port.ContainerPort)
			}
		}
		writable := 0
		for _, m := range c.VolumeMounts {
			if !m.ReadOnly {
				writable++
				if m.MountPath != "/tmp" && m.MountPath != TunnelDir {
					t.Errorf("container %s writes to %s", c.Name, m.MountPath)
				}
			}
		}
		if writable != 1 {
			t.Errorf("container %s has %d writable mounts, want one scratch directory", c.Name, writable)
		}
	}
	// Through the shared process namespace a process opens the files of
	// another running as its user: the controller manager (the CA key)
	// and the scheduler each run as a user of their own.
	if users["kube-controller-manager"] == users["kube-apiserver"] || users["kube-scheduler"] == users["kube-apiserver"] || users["kube-scheduler"] == users["kube-controller-manager"] {
		t.Errorf("users %v: the controller manager and the scheduler share a user with another container", users)
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil {
			if v.Secret.DefaultMode == nil || *v.Secret.DefaultMode&0o007 != 0 || *v.Secret.DefaultMode&0o040 == 0 {
				t.Errorf("volume %s mode %v: want group-readable, nothing for others", v.Name, v.Secret.DefaultMode)
			}
			for _, it := range v.Secret.Items {
				if it.Mode != nil || path.Base(it.Path) != it.Path {
					t.Errorf("volume %s item %+v", v.Name, it)
				}
			}
		}
	}
}
