package console

import (
	"crypto/x509"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/go-logr/logr"
	authv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

//go:embed web
var assets embed.FS

// DefaultSessionTTL is how long a sign-in lasts.
const DefaultSessionTTL = 8 * time.Hour

// Options configure a Server.
type Options struct {
	// Config is the console's own identity in the admin cluster: it
	// creates TokenReviews and impersonates signed-in users, nothing else.
	Config *rest.Config
	// ClientCAs, when set, verify client certificates users may sign in
	// with (the admin cluster's client CA); the TLS listener must request
	// them (tls.VerifyClientCertIfGiven with the same pool).
	ClientCAs *x509.CertPool
	// SessionTTL is how long a sign-in lasts; DefaultSessionTTL when zero.
	SessionTTL time.Duration
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Log receives one line per request: the user, method, path and
	// status, never a header, a body or a query.
	Log logr.Logger
}

// Server is the console: pages, the impersonating proxy to the admin
// cluster's API and the console's own endpoints.
type Server struct {
	opts     Options
	sessions *sessions
	reviews  kubernetes.Interface
	upstream *url.URL
}

// New checks the options and returns a Server.
func New(o Options) (*Server, error) {
	if o.Config == nil {
		return nil, errors.New("console: no admin cluster configuration")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SessionTTL <= 0 {
		o.SessionTTL = DefaultSessionTTL
	}
	cs, err := kubernetes.NewForConfig(o.Config)
	if err != nil {
		return nil, fmt.Errorf("console: admin cluster client: %w", err)
	}
	up, err := url.Parse(o.Config.Host)
	if err != nil || up.Host == "" {
		return nil, fmt.Errorf("console: admin cluster address %q is not a URL", o.Config.Host)
	}
	if up.Scheme == "" {
		up.Scheme = "https"
	}
	return &Server{opts: o, sessions: newSessions(o.SessionTTL, o.Now), reviews: cs, upstream: up}, nil
}

// Handler routes every request of the console.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	web, err := fs.Sub(assets, "web")
	if err != nil {
		panic(err) // the embedded tree is part of the binary
	}
	mux.Handle("GET /", http.FileServerFS(web))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("POST /console/api/session", s.signIn)
	mux.HandleFunc("GET /console/api/session", s.authed(s.whoAmI))
	mux.HandleFunc("DELETE /console/api/session", s.authed(s.signOut))
	mux.HandleFunc("GET /console/api/versions", s.authed(s.versions))
	mux.HandleFunc("GET /console/api/watch", s.authed(s.watch))
	mux.HandleFunc("POST /console/api/namespaces/{namespace}/tenantclusters/{name}/kubeconfig", s.authed(s.kubeconfig))
	mux.HandleFunc("POST /console/api/namespaces/{namespace}/tenantclusters/{name}/join-command", s.authed(s.joinCommand))
	mux.HandleFunc("POST /console/api/namespaces/{namespace}/tenantclusters/{name}/revoke-kubeconfigs", s.authed(s.revokeKubeconfigs))
	mux.HandleFunc("GET /console/api/namespaces/{namespace}/tenantclusters/{name}/nodes", s.authed(s.nodes))
	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE"} {
		mux.HandleFunc(m+" /kube/", s.authed(s.proxy))
	}
	return s.headers(mux)
}

// headers sets what every answer carries: a content security policy that
// allows the console's own scripts, styles and connections only, no
// framing, no sniffing, no referrer, and no caching of API answers.
func (s *Server) headers(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Strict-Transport-Security", "max-age=31536000")
		if strings.HasPrefix(r.URL.Path, "/console/api/") || strings.HasPrefix(r.URL.Path, "/kube/") {
			h.Set("Cache-Control", "no-store")
		}
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		next.ServeHTTP(rec, r)
		if r.URL.Path != "/healthz" {
			s.opts.Log.Info("request", "method", r.Method, "path", r.URL.Path, "status", rec.code, "user", rec.user)
		}
	})
}

// statusRecorder remembers the status and the user for the request log.
type statusRecorder struct {
	http.ResponseWriter
	code int
	user string
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

// Flush lets server-sent events and watches through the recorder.
func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// authed runs h with the request's session. Without one it answers 401.
// A state-changing request must carry the session's CSRF token in
// X-CSRF-Token and, when the browser says where it comes from, come from
// the console's own origin.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		sess := s.sessions.get(r)
		if sess == nil {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "not signed in, or the session expired: sign in again")
			return
		}
		if rec, ok := w.(*statusRecorder); ok {
			rec.user = sess.user.Name
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, "cross-site request refused: the request's Origin is not this console")
				return
			}
			if !sess.validCSRF(r) {
				writeStatus(w, http.StatusForbidden, metav1.StatusReasonForbidden, "missing or wrong X-CSRF-Token header: send the token GET /console/api/session returns")
				return
			}
		}
		h(w, r, sess)
	}
}

// sameOrigin is false when the browser names another origin than the
// console's (Origin, or Sec-Fetch-Site); clients that send neither, such
// as curl, rely on the CSRF token alone.
func sameOrigin(r *http.Request) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	return origin == "" || origin == "https://"+r.Host
}

// signInRequest is the body of POST /console/api/session.
type signInRequest struct {
	Token string `json:"token"`
}

// sessionInfo answers the session endpoints.
type sessionInfo struct {
	User    User      `json:"user"`
	CSRF    string    `json:"csrfToken"`
	Expires time.Time `json:"expires"`
}

// signIn authenticates a bearer token with a TokenReview, or the TLS
// client certificate, and starts a session as that user. The body must be
// JSON, which a cross-site form cannot send, so no other site can sign a
// browser in as someone else.
func (s *Server) signIn(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" || !sameOrigin(r) {
		writeStatus(w, http.StatusUnsupportedMediaType, metav1.StatusReasonUnsupportedMediaType, `sign in with a JSON body {"token": "..."} (or {} with a client certificate) from this console`)
		return
	}
	var req signInRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "the body is not JSON: send {\"token\": \"...\"}")
		return
	}
	var user User
	req.Token = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(req.Token), "Bearer "))
	switch {
	case req.Token != "":
		review, err := s.reviews.AuthenticationV1().TokenReviews().Create(r.Context(), &authv1.TokenReview{Spec: authv1.TokenReviewSpec{Token: req.Token}}, metav1.CreateOptions{})
		if err != nil {
			s.opts.Log.Error(err, "token review")
			writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "the admin cluster could not check the token: "+err.Error())
			return
		}
		if !review.Status.Authenticated {
			writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "token: the admin cluster does not accept this token; give a service account token (kubectl create token NAME) or an OIDC ID token the admin cluster trusts")
			return
		}
		u := review.Status.User
		// The extra fields (a service account token's credential id,
		// pod name) are not impersonated: RBAC does not read them, and
		// impersonating them would need a rule per key.
		user = User{Name: u.Username, UID: u.UID, Groups: u.Groups, Via: "token"}
	case r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && s.opts.ClientCAs != nil:
		cert := r.TLS.VerifiedChains[0][0]
		user = User{Name: cert.Subject.CommonName, Groups: append(append([]string{}, cert.Subject.Organization...), "system:authenticated"), Via: "certificate"}
	default:
		writeStatus(w, http.StatusBadRequest, metav1.StatusReasonBadRequest, "token: give a bearer token the admin cluster accepts, or sign in with a client certificate of the admin cluster's client CA")
		return
	}
	if user.Name == "" || strings.HasPrefix(user.Name, "system:anonymous") {
		writeStatus(w, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, "the credential names no user")
		return
	}
	sess, err := s.newSession(user)
	if err != nil {
		writeError(w, err)
		return
	}
	http.SetCookie(w, s.sessions.cookie(sess.id, sess.expires))
	writeJSON(w, http.StatusOK, sessionInfo{User: sess.user, CSRF: sess.csrf, Expires: sess.expires})
}

// newSession builds the impersonating transport of a user and keeps the
// session.
func (s *Server) newSession(user User) (*session, error) {
	cfg := rest.CopyConfig(s.opts.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user.Name, UID: user.UID, Groups: user.Groups}
	cfg.UserAgent = "kubinception-console"
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("transport as %s: %w", user.Name, err)
	}
	sess := &session{user: user, transport: tr, config: cfg}
	if err := s.sessions.add(sess); err != nil {
		return nil, err
	}
	return sess, nil
}

func (s *Server) whoAmI(w http.ResponseWriter, _ *http.Request, sess *session) {
	writeJSON(w, http.StatusOK, sessionInfo{User: sess.user, CSRF: sess.csrf, Expires: sess.expires})
}

func (s *Server) signOut(w http.ResponseWriter, _ *http.Request, sess *session) {
	s.sessions.remove(sess.id)
	http.SetCookie(w, s.sessions.cookie("", time.Time{}))
	w.WriteHeader(http.StatusNoContent)
}

// proxied are the admin cluster API paths the pages use, with the
// methods allowed on each; everything else is refused before it leaves
// the console, so a stolen session reaches no more than the console does.
var proxied = []struct {
	path    *regexp.Regexp
	methods string
}{
	{regexp.MustCompile(`^/apis/kubinception\.dev/v1alpha1/(namespaces/[a-z0-9-]+/)?(tenantclusters|datastores)(/[a-z0-9.-]+)?$`), "GET POST PUT PATCH DELETE"},
	{regexp.MustCompile(`^/apis/kubinception\.dev/v1alpha1/(namespaces/[a-z0-9-]+/)?(tenantclusters|datastores)/[a-z0-9.-]+/status$`), "GET"},
	{regexp.MustCompile(`^/apis/kubinception\.dev/v1alpha1/namespaces/[a-z0-9-]+/tenantbackups(/[a-z0-9.-]+)?$`), "GET POST DELETE"},
	{regexp.MustCompile(`^/api/v1/namespaces/[a-z0-9-]+/events$`), "GET"},
	{regexp.MustCompile(`^/apis/authorization\.k8s\.io/v1/selfsubjectaccessreviews$`), "POST"},
}

// proxyAllowed says whether method on path may go to the admin cluster.
func proxyAllowed(method, path string) bool {
	for _, p := range proxied {
		if p.path.MatchString(path) {
			return strings.Contains(" "+p.methods+" ", " "+method+" ")
		}
	}
	return false
}

// proxy forwards /kube/PATH to the admin cluster's API as the session's
// user. The browser's own credentials (cookie, CSRF token) stay here,
// and any Authorization or Impersonate-* header it sent is dropped: the
// user's identity comes from the session alone.
func (s *Server) proxy(w http.ResponseWriter, r *http.Request, sess *session) {
	path := strings.TrimPrefix(r.URL.Path, "/kube")
	if !proxyAllowed(r.Method, path) {
		writeStatus(w, http.StatusNotFound, metav1.StatusReasonNotFound, fmt.Sprintf("%s %s is not served by the console's API proxy (it serves TenantClusters, Datastores, TenantBackups and Events)", r.Method, path))
		return
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme = s.upstream.Scheme
			pr.Out.URL.Host = s.upstream.Host
			pr.Out.URL.Path = strings.TrimSuffix(s.upstream.Path, "/") + path
			pr.Out.URL.RawPath = ""
			pr.Out.Host = s.upstream.Host
			for k := range pr.Out.Header {
				if strings.HasPrefix(strings.ToLower(k), "impersonate-") {
					pr.Out.Header.Del(k)
				}
			}
			for _, k := range []string{"Authorization", "Cookie", "X-Csrf-Token", "Origin", "Referer"} {
				pr.Out.Header.Del(k)
			}
		},
		Transport:     sess.transport,
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, _ *http.Request, err error) {
			s.opts.Log.Error(err, "proxy to the admin cluster", "path", path)
			writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, "the admin cluster's API did not answer: "+err.Error())
		},
	}
	rp.ServeHTTP(w, r)
}

// writeJSON answers v as JSON.
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// writeStatus answers a Kubernetes Status, the shape every error of the
// console and of the API behind it has, so the pages read both alike.
func writeStatus(w http.ResponseWriter, code int, reason metav1.StatusReason, message string) {
	writeJSON(w, code, &metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Code: int32(code), Reason: reason, Message: message})
}

// writeError answers err: the admin cluster's own Status when it is one
// (403, 404, 422 keep their code and details), 500 otherwise.
func writeError(w http.ResponseWriter, err error) {
	var api apierrors.APIStatus
	if errors.As(err, &api) {
		st := api.Status()
		st.TypeMeta = metav1.TypeMeta{Kind: "Status", APIVersion: "v1"}
		st.Message = err.Error()
		code := int(st.Code)
		if code == 0 {
			code = http.StatusInternalServerError
		}
		writeJSON(w, code, &st)
		return
	}
	writeStatus(w, http.StatusInternalServerError, metav1.StatusReasonInternalError, err.Error())
}
