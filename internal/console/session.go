package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// cookieName is the session cookie. The __Host- prefix makes the browser
// refuse it unless it is Secure, has Path=/ and no Domain: no other host
// and no plain-http page can set or overwrite it.
const cookieName = "__Host-kubinception-console"

// User is who a session acts as: the identity the admin cluster
// authenticated, impersonated on every request.
type User struct {
	Name   string   `json:"name"`
	UID    string   `json:"uid,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// Via is how the user signed in: "token" or "certificate".
	Via string `json:"via"`
}

// session is a signed-in user. Its id lives only in an HttpOnly cookie;
// csrf is handed to the page, which sends it back in a header on every
// state-changing request.
type session struct {
	id      string
	csrf    string
	user    User
	expires time.Time
	// transport carries requests to the admin cluster as the user.
	transport http.RoundTripper
	config    *rest.Config
	// c is the user's client for the console's own endpoints, made on
	// first use.
	once sync.Once
	c    client.Client
	cErr error
}

// sessions are kept in memory: a restart signs everyone out, and no
// credential of a user is ever stored (only who they are).
type sessions struct {
	mu  sync.Mutex
	ttl time.Duration
	now func() time.Time
	m   map[string]*session
}

func newSessions(ttl time.Duration, now func() time.Time) *sessions {
	return &sessions{ttl: ttl, now: now, m: map[string]*session{}}
}

func randomToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func (s *sessions) add(sess *session) error {
	var err error
	if sess.id, err = randomToken(); err != nil {
		return err
	}
	if sess.csrf, err = randomToken(); err != nil {
		return err
	}
	now := s.now()
	sess.expires = now.Add(s.ttl)
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, old := range s.m {
		if now.After(old.expires) {
			delete(s.m, id)
		}
	}
	s.m[sess.id] = sess
	return nil
}

// get returns the live session of the request's cookie, or nil.
func (s *sessions) get(r *http.Request) *session {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.m[c.Value]
	if sess == nil {
		return nil
	}
	if s.now().After(sess.expires) {
		delete(s.m, c.Value)
		return nil
	}
	return sess
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

// cookie is the session cookie for id, or one that clears it (id "").
func (s *sessions) cookie(id string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: cookieName, Value: id, Path: "/", HttpOnly: true, Secure: true, SameSite: http.SameSiteStrictMode}
	if id == "" {
		c.MaxAge = -1
	} else {
		c.Expires = expires
	}
	return c
}

// validCSRF compares the request's X-CSRF-Token header with the
// session's, in constant time.
func (sess *session) validCSRF(r *http.Request) bool {
	got := r.Header.Get("X-CSRF-Token")
	return got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(sess.csrf)) == 1
}
