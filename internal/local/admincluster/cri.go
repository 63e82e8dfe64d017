package admincluster

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criClient talks to containerd's CRI service, as the kubelet does.
type criClient struct {
	conn *grpc.ClientConn
	rt   runtimeapi.RuntimeServiceClient
}

func dialCRI(socket string) (*criClient, error) {
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	return &criClient{conn: conn, rt: runtimeapi.NewRuntimeServiceClient(conn)}, nil
}

func (c *criClient) Close() error { return c.conn.Close() }

// removeAllPods stops and removes every pod sandbox, which runs the CNI
// plugins' DEL and so releases addresses, interfaces and iptables rules
// properly. Pods on the pod network go first: Calico's DEL asks the admin
// API server, a host-network static pod, about the pod. A pod that cannot
// be removed does not keep the others.
//
// When the API server is already gone (a cluster whose processes were
// killed), Calico cannot release a pod's network. Such a pod's containers
// are stopped instead, and its network is left to the steps after (pod
// interfaces deleted, CNI and runtime state removed): those pods are
// returned in left, not as errors.
func (c *criClient) removeAllPods(ctx context.Context) (removed int, left []string, err error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.rt.ListPodSandbox(lctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, nil, fmt.Errorf("list pods: %w", err)
	}
	sbs := resp.Items
	hostNetwork := map[string]bool{}
	for _, sb := range sbs {
		st, err := c.rt.PodSandboxStatus(lctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.Id})
		hostNetwork[sb.Id] = err == nil && st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	}
	sort.SliceStable(sbs, func(i, j int) bool { return !hostNetwork[sbs[i].Id] && hostNetwork[sbs[j].Id] })
	var errs []error
	for _, sb := range sbs {
		name := sb.Metadata.GetNamespace() + "/" + sb.Metadata.GetName()
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.rt.StopPodSandbox(sctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id})
		if err == nil {
			_, err = c.rt.RemovePodSandbox(sctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id})
		} else if !hostNetwork[sb.Id] {
			if serr := c.stopContainers(sctx, sb.Id); serr == nil {
				left = append(left, fmt.Sprintf("%s (%v)", name, err))
				err = nil
			} else {
				err = errors.Join(err, serr)
			}
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s: %w", name, err))
			continue
		}
		removed++
	}
	return removed, left, errors.Join(errs...)
}

// stopContainers stops every container of a pod sandbox at once.
func (c *criClient) stopContainers(ctx context.Context, sandbox string) error {
	cts, err := c.rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: sandbox}})
	if err != nil {
		return fmt.Errorf("list its containers: %w", err)
	}
	var errs []error
	for _, ct := range cts.Containers {
		if ct.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			continue
		}
		if _, err := c.rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: ct.Id}); err != nil {
			errs = append(errs, fmt.Errorf("stop container %s: %w", ct.Metadata.GetName(), err))
		}
	}
	return errors.Join(errs...)
}

// runningPods returns "NAME/A1/A2..." for every ready sandbox that has a
// running container, where A1... are the values of the given annotations.
func (c *criClient) runningPods(ctx context.Context, annotations ...string) (map[string]bool, error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sbs, err := c.rt.ListPodSandbox(lctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		State: &runtimeapi.PodSandboxStateValue{State: runtimeapi.PodSandboxState_SANDBOX_READY}}})
	if err != nil {
		return nil, err
	}
	cts, err := c.rt.ListContainers(lctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil {
		return nil, err
	}
	withContainer := map[string]bool{}
	for _, ct := range cts.Containers {
		withContainer[ct.PodSandboxId] = true
	}
	out := map[string]bool{}
	for _, sb := range sbs.Items {
		if !withContainer[sb.Id] {
			continue
		}
		key := sb.Metadata.GetName()
		for _, a := range annotations {
			key += "/" + sb.Annotations[a]
		}
		out[key] = true
	}
	return out, nil
}

// containerInfo is one container by pod and state, for diagnostics when
// the cluster does not come up.
type containerInfo struct {
	Pod, Namespace, Name, State string
	Attempt                     uint32
}

func (c *criClient) containers(ctx context.Context) ([]containerInfo, error) {
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.rt.ListContainers(lctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return nil, err
	}
	var out []containerInfo
	for _, ct := range resp.Containers {
		out = append(out, containerInfo{
			Pod:       ct.Labels["io.kubernetes.pod.name"],
			Namespace: ct.Labels["io.kubernetes.pod.namespace"],
			Name:      ct.Metadata.GetName(),
			Attempt:   ct.Metadata.GetAttempt(),
			State:     stateWord(ct.State),
		})
	}
	return out, nil
}

func stateWord(s runtimeapi.ContainerState) string {
	switch s {
	case runtimeapi.ContainerState_CONTAINER_RUNNING:
		return "running"
	case runtimeapi.ContainerState_CONTAINER_CREATED:
		return "created"
	case runtimeapi.ContainerState_CONTAINER_EXITED:
		return "exited"
	}
	return "unknown"
}
