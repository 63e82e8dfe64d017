package tenantcluster

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	kv1 "kubinception.dev/kubinception/api/v1alpha1"
	cp "kubinception.dev/kubinception/internal/controlplane"
	"kubinception.dev/kubinception/internal/datastore"
	"kubinception.dev/kubinception/internal/objects"
	"kubinception.dev/kubinception/internal/pki"
)

func scheme(t *testing.T) *runtime.Scheme {
	t.Helper()
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	if err := kv1.AddToScheme(s); err != nil {
		t.Fatal(err)
	}
	return s
}

func testState(t *testing.T, now time.Time) (*Reconciler, *scope) {
	t.Helper()
	gatewayCA, err := pki.NewCA("gateway", now)
	if err != nil {
		t.Fatal(err)
	}
	tc := &kv1.TenantCluster{ObjectMeta: metav1.ObjectMeta{Name: "demo", Namespace: "default", UID: "3f7c1a8e-0000-4000-8000-000000000001", Generation: 1},
		Spec: kv1.TenantClusterSpec{Version: "v1.35.4", Network: kv1.NetworkSpec{ServiceCIDR: "10.96.0.0/16", PodCIDR: "10.244.0.0/16", ClusterDomain: "cluster.local", DNSServiceIP: "10.96.0.10"}}}
	tn, err := datastore.TenancyFor(string(tc.UID))
	if err != nil {
		t.Fatal(err)
	}
	r := &Reconciler{Registry: "kubinception.local", Clock: clocktesting.NewFakePassiveClock(now)}
	s := newScope(tc, now)
	s.tenancy = tn
	s.etcd = datastoreConn{name: "default", ds: &kv1.Datastore{}, gatewayCA: gatewayCA, gatewayEndpoint: "https://10.201.0.9:2379"}
	s.exposure = exposure{serviceIP: "10.201.0.20", port: 31000, advertise: "10.199.0.1", endpoint: "https://10.199.0.1:31000"}
	return r, s
}

func TestDesiredPKIIsStableAndComplete(t *testing.T) {
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	r, s := testState(t, now)
	first, err := r.desiredPKI(s, nil, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{cp.FileCA, cp.FileCAKey, cp.FileAPIServer, cp.FileKubeletClient, cp.FileFrontProxyCA, cp.FileSAKey, cp.FileSAPub,
		cp.FileDatastoreCA, cp.FileDatastoreClient, cp.FileControllerManager, cp.FileScheduler} {
		if len(first[key]) == 0 {
			t.Errorf("PKI Secret lacks %s", key)
		}
	}
	again, err := r.desiredPKI(s, first, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	if !objects.SameData(first, again) {
		t.Fatal("a second reconcile with nothing changed reissued certificates")
	}
	client, err := pki.ParseKeyPair(first[cp.FileDatastoreClient], first[cp.FileDatastoreClientKey])
	if err != nil {
		t.Fatal(err)
	}
	if client.Cert.Subject.CommonName != s.tenancy.User {
		t.Fatalf("datastore client certificate CN = %s, want the tenant's etcd user %s", client.Cert.Subject.CommonName, s.tenancy.User)
	}
	if err := client.Cert.CheckSignatureFrom(s.etcd.gatewayCA.Cert); err != nil {
		t.Fatalf("datastore client certificate is not signed by the gateway's tenant CA: %v", err)
	}

	// A new endpoint address reissues the serving certificate and nothing
	// else; the CA stays.
	s.exposure.advertise = "10.199.0.2"
	moved, err := r.desiredPKI(s, first, false, caKeep)
	if err != nil {
		t.Fatal(err)
	}
	if string(moved[cp.FileCA]) != string(first[cp.FileCA]) {
		t.Error("the CA changed with the endpoint")
	}
	if string(moved[cp.FileAPIServer]) == string(first[cp.FileAPIServer]) {
		t.Error("the serving certificate was kept although its address changed")
	}
	if string(moved[cp.FileDatastoreClient]) != string(first[cp.FileDatastoreClient]) {
		t.Error("the datastore client certificate changed with the endpoint")
	}
	if objects.HashData(moved) == objects.HashData(first) {
		t.Error("the PKI hash did not change, so the pods would not roll")
	}
}

func TestUpdateStatus(t *testing.T) {
	now := time.Now()
	ready := func(s *scope) *metav1.Condition {
		return meta.FindStatusCondition(s.tc.Status.Conditions, kv1.ConditionReady)
	}
	tests := []struct {
		name    string
		prepare func(s *scope)
		err     error
		// want is Ready's status and reason; generation says whether
		// ObservedGeneration moved.
		wantStatus metav1.ConditionStatus
		wantReason string
		generation bool
	}{
		{name: "no phase done", wantStatus: metav1.ConditionFalse, wantReason: kv1.ReasonWaiting, generation: true},
		{name: "a phase failed carries its reason", prepare: func(s *scope) {
			s.succeed(kv1.ConditionDatastoreReady, kv1.ReasonTenancyProvisioned, "ok")
			s.succeed(kv1.ConditionCertificatesReady, kv1.ReasonCertificatesIssued, "ok")
			s.fail(kv1.ConditionControlPlaneAvailable, kv1.ReasonImageMissing, "image X is missing")
		}, wantStatus: metav1.ConditionFalse, wantReason: kv1.ReasonImageMissing, generation: true},
		{name: "all phases done", prepare: func(s *scope) {
			for _, c := range phaseConditions {
				s.succeed(c, "Fine", "fine")
			}
			s.tc.Status.Endpoint = "https://10.199.0.1:31000"
		}, wantStatus: metav1.ConditionTrue, wantReason: kv1.ReasonReady, generation: true},
		{name: "an error keeps the observed generation", prepare: func(s *scope) {
			for _, c := range phaseConditions {
				s.succeed(c, "Fine", "fine")
			}
		}, err: errors.New("boom"), wantStatus: metav1.ConditionFalse, wantReason: kv1.ReasonReconcileFailed},
		{name: "an invalid spec says so", err: reconcile.TerminalError(errors.New("bad SAN")), wantStatus: metav1.ConditionFalse, wantReason: kv1.ReasonInvalidSpec},
		{name: "paused", prepare: func(s *scope) { s.paused = true }, wantStatus: metav1.ConditionFalse, wantReason: kv1.ReasonPaused},
		{name: "deleting", prepare: func(s *scope) {
			s.deleting = true
			s.succeed(kv1.ConditionDeleting, kv1.ReasonDeletingData, "deleting keys")
		}, wantStatus: metav1.ConditionFalse, wantReason: kv1.ReasonDeletingData, generation: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, s := testState(t, now)
			s.tc.Generation = 3
			if tt.prepare != nil {
				tt.prepare(s)
			}
			r.updateStatus(context.Background(), s, tt.err)
			c := ready(s)
			if c == nil || c.Status != tt.wantStatus || c.Reason != tt.wantReason {
				t.Fatalf("Ready = %+v, want %s/%s", c, tt.wantStatus, tt.wantReason)
			}
			if got := s.tc.Status.ObservedGeneration == 3; got != tt.generation {
				t.Fatalf("observedGeneration = %d, moved=%v want %v", s.tc.Status.ObservedGeneration, got, tt.generation)
			}
			deleting := meta.FindStatusCondition(s.tc.Status.Conditions, kv1.ConditionDeleting)
			switch {
			case s.paused && deleting != nil:
				t.Fatalf("a paused reconcile set Deleting: %+v", deleting)
			case !s.paused && (deleting == nil || (deleting.Status == metav1.ConditionTrue) != s.deleting):
				t.Fatalf("Deleting = %+v, deleting=%v", deleting, s.deleting)
			}
		})
	}
}

func TestDiagnosePods(t *testing.T) {
	r, s := testState(t, time.Now())
	pod := func(state corev1.ContainerState, last *corev1.ContainerStateTerminated) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "demo-control-plane-x", Namespace: "default", Labels: cp.Labels("demo")},
			Status: corev1.PodStatus{ContainerStatuses: []corev1.ContainerStatus{{
				Name: "kube-apiserver", Image: "kubinception.local/kube-apiserver:v1.35.4", State: state, RestartCount: 4,
				LastTerminationState: corev1.ContainerState{Terminated: last},
			}}},
		}
	}
	tests := []struct {
		name, reason, mention string
		pod                   *corev1.Pod
	}{
		{"missing image", kv1.ReasonImageMissing, "kubinception build components --version v1.35.4",
			pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImageNeverPull"}}, nil)},
		{"crash loop", kv1.ReasonControlPlaneFailing, "etcd is unreachable",
			pod(corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}, &corev1.ContainerStateTerminated{Message: "etcd is unreachable"})},
		{"starting", "", "", pod(corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}, nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r.Client = fake.NewClientBuilder().WithScheme(scheme(t)).WithObjects(tt.pod).Build()
			reason, msg := r.diagnosePods(context.Background(), s.tc)
			if reason != tt.reason || !strings.Contains(msg, tt.mention) {
				t.Fatalf("diagnosePods = %q, %q; want reason %q mentioning %q", reason, msg, tt.reason, tt.mention)
			}
		})
	}
}
