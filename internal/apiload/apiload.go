// Package apiload sends requests to a Kubernetes API server without
// pause and records every answer: reads and small writes of one
// ConfigMap, through client-go as any client of a tenant would (its
// retries of a 429 with Retry-After included). The upgrade test and
// benchmark use it to show that a control-plane rollout fails no request
// and to measure the latency a client sees while it runs.
package apiload

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// FreshConnections returns a clientset for config that opens a new
// connection for every request, as a kubectl run or a short-lived client
// does: such a client meets whatever the proxy in front does at that
// moment, where a client on one long-lived connection meets only the
// server it is connected to.
func FreshConnections(config *rest.Config) (kubernetes.Interface, error) {
	c := rest.CopyConfig(config)
	c.WrapTransport = func(rt http.RoundTripper) http.RoundTripper {
		t, ok := rt.(*http.Transport)
		if !ok {
			return rt
		}
		// HTTP/1.1 without keep-alives: HTTP/2 would share one
		// connection between requests whatever the transport says.
		t = t.Clone()
		t.DisableKeepAlives = true
		t.ForceAttemptHTTP2 = false
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		if t.TLSClientConfig != nil {
			t.TLSClientConfig.NextProtos = []string{"http/1.1"}
		}
		return t
	}
	return kubernetes.NewForConfig(c)
}

// Sample is one request's outcome.
type Sample struct {
	// Start is when the request was sent; Latency how long the answer
	// took, client-go's retries included.
	Start   time.Time
	Latency time.Duration
	// Op is "get" or "patch"; Err is nil when the request succeeded.
	Op  string
	Err error
}

// Load is a running load. Stop ends it.
type Load struct {
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	samples []Sample
}

// Options shape a load.
type Options struct {
	// Namespace and Name of the ConfigMap read and written (created when
	// missing).
	Namespace, Name string
	// Clients is how many loops send requests at once, each one
	// request at a time; Pause is the wait between one loop's requests.
	Clients int
	Pause   time.Duration
}

// Start creates the ConfigMap if it is missing and starts the loops; each
// alternates a GET and a merge patch of the ConfigMap.
func Start(ctx context.Context, cs kubernetes.Interface, o Options) (*Load, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: o.Namespace, Name: o.Name}, Data: map[string]string{}}
	if _, err := cs.CoreV1().ConfigMaps(o.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create ConfigMap %s/%s: %w", o.Namespace, o.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Load{cancel: cancel}
	for i := range max(o.Clients, 1) {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for n := 0; ctx.Err() == nil; n++ {
				op, start := "get", time.Now()
				var err error
				if n%2 == 0 {
					_, err = cs.CoreV1().ConfigMaps(o.Namespace).Get(ctx, o.Name, metav1.GetOptions{})
				} else {
					op = "patch"
					patch := fmt.Sprintf(`{"data":{"client-%d":%q}}`, i, strconv.Itoa(n))
					_, err = cs.CoreV1().ConfigMaps(o.Namespace).Patch(ctx, o.Name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				}
				if ctx.Err() != nil {
					// Stop cancelled this request: not an answer.
					return
				}
				l.mu.Lock()
				l.samples = append(l.samples, Sample{Start: start, Latency: time.Since(start), Op: op, Err: err})
				l.mu.Unlock()
				select {
				case <-ctx.Done():
				case <-time.After(o.Pause):
				}
			}
		}()
	}
	return l, nil
}

// Stop ends the load and returns every sample, in the order answered.
func (l *Load) Stop() []Sample {
	l.cancel()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.samples)
}

// Summary sums up samples.
type Summary struct {
	Sent, Failed int
	// Failures are the first errors, for a report.
	Failures []string
	// P50, P99 and Worst are latencies of the successful requests.
	P50, P99, Worst time.Duration
}

// Summarize sums up the samples sent in [from, to); a zero to means no
// end.
func Summarize(samples []Sample, from, to time.Time) Summary {
	var s Summary
	var lat []time.Duration
	for _, x := range samples {
		if x.Start.Before(from) || !to.IsZero() && !x.Start.Before(to) {
			continue
		}
		s.Sent++
		if x.Err != nil {
			s.Failed++
			if len(s.Failures) < 10 {
				s.Failures = append(s.Failures, fmt.Sprintf("%s at %s: %v", x.Op, x.Start.Format("15:04:05.000"), x.Err))
			}
			continue
		}
		lat = append(lat, x.Latency)
	}
	if len(lat) > 0 {
		slices.Sort(lat)
		s.P50 = lat[len(lat)/2]
		s.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
		s.Worst = lat[len(lat)-1]
	}
	return s
}

func (s Summary) String() string {
	return fmt.Sprintf("%d requests, %d failed; latency p50 %s, p99 %s, worst %s",
		s.Sent, s.Failed, s.P50.Round(time.Millisecond), s.P99.Round(time.Millisecond), s.Worst.Round(time.Millisecond))
}
