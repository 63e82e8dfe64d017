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
func (c *criClient) removeAllPods(ctx context.Context) (int, error) {
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	resp, err := c.rt.ListPodSandbox(lctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return 0, fmt.Errorf("list pods: %w", err)
	}
	sbs := resp.Items
	hostNetwork := map[string]bool{}
	for _, sb := range sbs {
		st, err := c.rt.PodSandboxStatus(lctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.Id})
		hostNetwork[sb.Id] = err == nil && st.GetStatus().GetLinux().GetNamespaces().GetOptions().GetNetwork() == runtimeapi.NamespaceMode_NODE
	}
	sort.SliceStable(sbs, func(i, j int) bool { return !hostNetwork[sbs[i].Id] && hostNetwork[sbs[j].Id] })
	removed := 0
	var errs []error
	for _, sb := range sbs {
		sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := c.rt.StopPodSandbox(sctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: sb.Id})
		if err == nil {
			_, err = c.rt.RemovePodSandbox(sctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: sb.Id})
		}
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("remove pod %s/%s: %w", sb.Metadata.GetNamespace(), sb.Metadata.GetName(), err))
			continue
		}
		removed++
	}
	return removed, errors.Join(errs...)
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
