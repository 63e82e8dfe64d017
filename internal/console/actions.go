package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/controller-runtime/pkg/client"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	"kubinception.dev/kubinception/internal/join"
	"kubinception.dev/kubinception/internal/kubeconfig"
	"kubinception.dev/kubinception/internal/release"
	"kubinception.dev/kubinception/internal/scheme"
)

// issueWait is how long the kubeconfig endpoint waits for the operator to
// authorize the tenant's current customer generation.
const issueWait = 30 * time.Second

// watchable are the resources the watch endpoint streams.
var watchable = map[string]struct {
	gvr        schema.GroupVersionResource
	namespaced bool
}{
	"tenantclusters": {kv1.GroupVersion.WithResource("tenantclusters"), true},
	"datastores":     {kv1.GroupVersion.WithResource("datastores"), false},
	"events":         {corev1.SchemeGroupVersion.WithResource("events"), true},
}

// client is a controller-runtime client acting as the session's user,
// made once per session.
func (sess *session) client() (client.Client, error) {
	sess.once.Do(func() {
		sess.c, sess.cErr = client.New(sess.config, client.Options{Scheme: scheme.New()})
	})
	return sess.c, sess.cErr
}

// watch streams a list and then the changes of one resource as
// server-sent events, read as the user: "list" carries the items, then
// "ADDED", "MODIFIED" and "DELETED" one object each. When the admin
// cluster refuses (403) or fails, a "failure" event carries its Status
// and the stream ends; when the watch ends on its own the stream ends
// too and the browser's EventSource reconnects, listing again.
//
// Query: resource (tenantclusters, datastores, events), namespace
// (empty: all the user may list), name (one object; for events, the
// object they are about).
func (s *Server) watch(w http.ResponseWriter, r *http.Request, sess *session) {
	q := r.URL.Query()
	res, ok := watchable[q.Get("resource")]
	if !ok {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "resource: give tenantclusters, datastores or events")
		return
	}
	ns, name := q.Get("namespace"), q.Get("name")
	if bad := badName("namespace", ns) + badName("name", name); bad != "" {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, bad)
		return
	}
	dc, err := dynamic.NewForConfig(sess.config)
	if err != nil {
		writeError(w, err)
		return
	}
	ri := dynamic.ResourceInterface(dc.Resource(res.gvr))
	if res.namespaced && ns != "" {
		ri = dc.Resource(res.gvr).Namespace(ns)
	}
	opts := metav1.ListOptions{}
	if name != "" {
		field := "metadata.name"
		if q.Get("resource") == "events" {
			field = "involvedObject.name"
		}
		opts.FieldSelector = field + "=" + name
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, data); err != nil {
			return err
		}
		return rc.Flush()
	}
	fail := func(err error) {
		var api apierrors.APIStatus
		st := metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: err.Error()}
		if errors.As(err, &api) {
			st = api.Status()
		}
		_ = send("failure", st)
	}
	_, _ = fmt.Fprint(w, "retry: 2000\n\n")
	list, err := ri.List(r.Context(), opts)
	if err != nil {
		fail(err)
		return
	}
	if err := send("list", list.Items); err != nil {
		return
	}
	opts.ResourceVersion = list.GetResourceVersion()
	opts.AllowWatchBookmarks = false
	wi, err := ri.Watch(r.Context(), opts)
	if err != nil {
		fail(err)
		return
	}
	defer wi.Stop()
	beat := time.NewTicker(25 * time.Second)
	defer beat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-beat.C:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
				return
			}
		case ev, ok := <-wi.ResultChan():
			if !ok {
				return
			}
			switch ev.Type {
			case watch.Added, watch.Modified, watch.Deleted:
				if err := send(string(ev.Type), ev.Object); err != nil {
					return
				}
			case watch.Error:
				fail(apierrors.FromObject(ev.Object))
				return
			}
		}
	}
}

// badName says what is wrong with an optional name of the query.
func badName(field, v string) string {
	if v == "" {
		return ""
	}
	if errs := validation.IsDNS1123Subdomain(v); len(errs) > 0 {
		return fmt.Sprintf("%s %q: %s. ", field, v, strings.Join(errs, "; "))
	}
	return ""
}

// tenantKey reads the tenant the path names, as the user: the user must
// be allowed to get it, or the admin cluster's answer (403, 404) is
// returned.
func (s *Server) tenantKey(w http.ResponseWriter, r *http.Request, sess *session) (client.Client, types.NamespacedName, bool) {
	key := types.NamespacedName{Namespace: r.PathValue("namespace"), Name: r.PathValue("name")}
	if bad := badName("namespace", key.Namespace) + badName("name", key.Name); bad != "" {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, bad)
		return nil, key, false
	}
	c, err := sess.client()
	if err != nil {
		writeError(w, err)
		return nil, key, false
	}
	if err := c.Get(r.Context(), key, &kv1.TenantCluster{}); err != nil {
		writeError(w, err)
		return nil, key, false
	}
	return c, key, true
}

// stateError answers an error of the shared issuing code: the admin
// cluster's own refusal when it is one, else 409 (the tenant is not in a
// state to answer yet: not Ready, not authorized).
func stateError(w http.ResponseWriter, err error) {
	var api apierrors.APIStatus
	if errors.As(err, &api) {
		writeError(w, err)
		return
	}
	writeStatus(w, http.StatusConflict, metav1.StatusReasonConflict, err.Error())
}

// kubeconfig issues a customer kubeconfig of the tenant, exactly as
// `kubinception kubeconfig` does, reading the tenant and its CA Secret as
// the user: who may not read that Secret gets the admin cluster's 403.
// Body (optional): {"ttl": "8h"}.
func (s *Server) kubeconfig(w http.ResponseWriter, r *http.Request, sess *session) {
	c, key, ok := s.tenantKey(w, r, sess)
	if !ok {
		return
	}
	ttl := kubeconfig.DefaultCustomerTTL
	var body struct {
		TTL string `json:"ttl"`
	}
	if r.ContentLength != 0 {
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4096)).Decode(&body); err != nil {
			writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, `the body is not JSON: send {"ttl": "8h"} or nothing`)
			return
		}
	}
	if body.TTL != "" {
		d, err := time.ParseDuration(body.TTL)
		if err == nil {
			err = kubeconfig.ValidateTTL(d)
		}
		if err != nil {
			writeStatus(w, http.StatusUnprocessableEntity, metav1.StatusReasonInvalid, fmt.Sprintf("ttl %q: %v", body.TTL, err))
			return
		}
		ttl = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), issueWait+10*time.Second)
	defer cancel()
	issued, err := kubeconfig.IssueForTenant(ctx, c, key, ttl, s.opts.Now(), issueWait)
	if err != nil {
		stateError(w, err)
		return
	}
	s.opts.Log.Info("issued kubeconfig", "tenant", key.String(), "user", sess.user.Name, "as", issued.User, "notAfter", issued.Cert.NotAfter)
	w.Header().Set("Content-Type", "application/yaml")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="%s.kubeconfig"`, key.Name))
	w.Header().Set("X-Kubeconfig-Expires", issued.Cert.NotAfter.UTC().Format(time.RFC3339))
	_, _ = w.Write(issued.Kubeconfig)
}

// tenantAdmin is the admin access to the tenant the path names, read
// as the user (the TenantCluster, then its admin kubeconfig Secret); it
// answers the refusal itself when there is none.
func (s *Server) tenantAdmin(w http.ResponseWriter, r *http.Request, sess *session) (*join.Tenant, types.NamespacedName, bool) {
	c, key, ok := s.tenantKey(w, r, sess)
	if !ok {
		return nil, key, false
	}
	t, err := join.ForTenant(r.Context(), c, key.Namespace, key.Name)
	if err != nil {
		stateError(w, err)
		return nil, key, false
	}
	return t, key, true
}

// joinCommand creates a bootstrap token in the tenant and answers the
// kubeadm join command, as `kubinception join-command` does; the
// tenant's admin kubeconfig is read as the user.
func (s *Server) joinCommand(w http.ResponseWriter, r *http.Request, sess *session) {
	t, key, ok := s.tenantAdmin(w, r, sess)
	if !ok {
		return
	}
	now := s.opts.Now()
	jc, err := t.NewCommand(r.Context(), join.DefaultTTL, now)
	if err != nil {
		stateError(w, err)
		return
	}
	s.opts.Log.Info("issued join command", "tenant", key.String(), "user", sess.user.Name)
	writeJSON(w, http.StatusOK, map[string]any{"command": jc.String(), "expires": now.Add(join.DefaultTTL).UTC()})
}

// Node is a tenant's node as the cluster page lists it.
type Node struct {
	Name       string    `json:"name"`
	Ready      bool      `json:"ready"`
	Version    string    `json:"version"`
	InternalIP string    `json:"internalIP,omitempty"`
	Created    time.Time `json:"created"`
}

// nodes lists the tenant's nodes through its admin kubeconfig, read as
// the user.
func (s *Server) nodes(w http.ResponseWriter, r *http.Request, sess *session) {
	t, key, ok := s.tenantAdmin(w, r, sess)
	if !ok {
		return
	}
	list, err := t.Clientset.CoreV1().Nodes().List(r.Context(), metav1.ListOptions{})
	if err != nil {
		writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, fmt.Sprintf("tenant cluster %s did not list its nodes: %v", key.Name, err))
		return
	}
	out := []Node{}
	for _, n := range list.Items {
		node := Node{Name: n.Name, Version: n.Status.NodeInfo.KubeletVersion, Created: n.CreationTimestamp.Time}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				node.Ready = cond.Status == corev1.ConditionTrue
			}
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP {
				node.InternalIP = a.Address
			}
		}
		out = append(out, node)
	}
	writeJSON(w, http.StatusOK, out)
}

// versions answers the release policy the create and upgrade forms
// offer: the default version and the supported minors. The API server
// has the last word (the CRD's rules on spec.version).
func (s *Server) versions(w http.ResponseWriter, _ *http.Request, _ *session) {
	writeJSON(w, http.StatusOK, map[string]any{
		"default":         release.DefaultKubernetesVersion,
		"supportedMinors": release.SupportedMinors(),
		"supported":       release.SupportedMinorsText(),
	})
}

// revokeKubeconfigs revokes every customer kubeconfig of the tenant
// issued so far, as `kubinception revoke kubeconfigs` does (the patch is
// made as the user), and answers the new generation; the cluster page
// shows the operator carrying it out.
func (s *Server) revokeKubeconfigs(w http.ResponseWriter, r *http.Request, sess *session) {
	c, key, ok := s.tenantKey(w, r, sess)
	if !ok {
		return
	}
	gen, err := kubeconfig.RaiseGeneration(r.Context(), c, key)
	if err != nil {
		stateError(w, err)
		return
	}
	s.opts.Log.Info("revoked kubeconfigs", "tenant", key.String(), "user", sess.user.Name, "generation", gen)
	writeJSON(w, http.StatusOK, map[string]int{"generation": gen})
}
