package gateway

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"filippo.io/age"
	"go.etcd.io/etcd/client/v3/namespace"

	"kubinception.dev/kubinception/internal/backup"
	"kubinception.dev/kubinception/internal/datastore"
)

// AdminCommonName is the identity the admin API accepts: a client
// certificate from the tenant CA with this common name. Only the operator,
// which holds the tenant CA's key, can issue it, and no tenant certificate
// (common name tenant-<uid>) has it.
const AdminCommonName = "kubinception:gateway-admin"

// Headers and trailers of the admin API.
const (
	// HeaderRecipient is the age public key a backup is encrypted to.
	HeaderRecipient = "Backup-Recipient"
	// HeaderIdentity is the age secret key a restore decrypts with. It is
	// used for the request only and never logged.
	HeaderIdentity = "Backup-Identity"
	// HeaderManifest is a backup's manifest, JSON in standard base64: a
	// trailer of a backup, a header of a restore.
	HeaderManifest = "Backup-Manifest"
	// TrailerError says why a backup failed after its body had started.
	TrailerError = "Backup-Error"
)

// adminHandler serves the admin API:
//
//	GET  /v1/tenants/{id}/backup             the tenant's archive, encrypted to Backup-Recipient;
//	                                         its manifest in the Backup-Manifest trailer
//	POST /v1/tenants/{id}/restore?mode=M     writes the archive in the body into the tenant
//	                                         (M: empty, the tenant must hold no key; replace)
//	PUT    /v1/tenants/{id}/pause?hold=D     holds the tenant's writes on every replica for at most D
//	                                         (default 30s); answers once every replica confirmed
//	DELETE /v1/tenants/{id}/pause            lets the tenant's writes through again
func (g *Gateway) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tenants/{id}/backup", g.serveBackup)
	mux.HandleFunc("POST /v1/tenants/{id}/restore", g.serveRestore)
	mux.HandleFunc("PUT /v1/tenants/{id}/pause", g.servePause)
	mux.HandleFunc("DELETE /v1/tenants/{id}/pause", g.serveResume)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || r.TLS.VerifiedChains[0][0].Subject.CommonName != AdminCommonName {
			http.Error(w, "the admin API accepts only the operator's admin certificate", http.StatusForbidden)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

// adminSource is a tenant's keys for the admin API: the tenant must be one
// the policy knows.
func (g *Gateway) adminSource(w http.ResponseWriter, r *http.Request) (backup.Source, bool) {
	tn, err := datastore.TenancyFor(r.PathValue("id"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return backup.Source{}, false
	}
	if _, err := g.cfg.Policy.Limits(tn.ID); err != nil {
		code := http.StatusServiceUnavailable
		if errors.Is(err, ErrUnknownTenant) {
			code = http.StatusNotFound
		}
		http.Error(w, fmt.Sprintf("tenant %s: %v", tn.ID, err), code)
		return backup.Source{}, false
	}
	return backup.Source{
		TenantID: tn.ID,
		KV:       namespace.NewKV(g.cli.KV, tn.Prefix),
		Lease:    namespace.NewLease(g.cli.Lease, tn.Prefix),
	}, true
}

func (g *Gateway) serveBackup(w http.ResponseWriter, r *http.Request) {
	to, err := age.ParseX25519Recipient(r.Header.Get(HeaderRecipient))
	if err != nil {
		http.Error(w, fmt.Sprintf("header %s must hold the age public key (age1...) to encrypt the backup to: %v", HeaderRecipient, err), http.StatusBadRequest)
		return
	}
	src, ok := g.adminSource(w, r)
	if !ok {
		return
	}
	start := time.Now()
	w.Header().Set("Trailer", HeaderManifest+", "+TrailerError)
	w.Header().Set("Content-Type", "application/octet-stream")
	m, err := backup.Snapshot(r.Context(), src, w, to)
	if err != nil {
		g.log.Error(err, "backup failed", "tenant", src.TenantID)
		w.Header().Set(TrailerError, oneLine(err.Error()))
		return
	}
	b, _ := json.Marshal(m)
	w.Header().Set(HeaderManifest, base64.StdEncoding.EncodeToString(b))
	g.log.Info("backed up a tenant", "tenant", src.TenantID, "revision", m.Revision, "objects", m.Objects, "bytes", m.ArchiveBytes, "took", time.Since(start).Round(time.Millisecond))
}

func (g *Gateway) serveRestore(w http.ResponseWriter, r *http.Request) {
	var mode backup.RestoreMode
	switch q := r.URL.Query().Get("mode"); q {
	case "empty":
		mode = backup.IntoEmpty
	case "replace":
		mode = backup.Replace
	default:
		http.Error(w, fmt.Sprintf("query parameter mode=%q: use empty (restore into a tenant with no keys) or replace (roll the tenant back)", q), http.StatusBadRequest)
		return
	}
	m, err := DecodeManifest(r.Header.Get(HeaderManifest))
	if err != nil {
		http.Error(w, fmt.Sprintf("header %s: %v", HeaderManifest, err), http.StatusBadRequest)
		return
	}
	id, err := age.ParseX25519Identity(r.Header.Get(HeaderIdentity))
	if err != nil {
		// The error names no part of the key.
		http.Error(w, fmt.Sprintf("header %s must hold the backup's age secret key (AGE-SECRET-KEY-...)", HeaderIdentity), http.StatusBadRequest)
		return
	}
	src, ok := g.adminSource(w, r)
	if !ok {
		return
	}
	start := time.Now()
	res, err := backup.Restore(r.Context(), src, r.Body, id, m, mode)
	if err != nil {
		g.log.Error(err, "restore failed", "tenant", src.TenantID, "written", res.Objects)
		code := http.StatusInternalServerError
		if errors.Is(err, backup.ErrNotEmpty) {
			code = http.StatusConflict
		}
		http.Error(w, err.Error(), code)
		return
	}
	g.log.Info("restored a tenant", "tenant", src.TenantID, "from", m.Tenant, "revision", m.Revision, "objects", res.Objects, "took", time.Since(start).Round(time.Millisecond))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// PauseAnswer is the admin API's answer to a pause.
type PauseAnswer struct {
	// Revision is the datastore's revision once every replica confirmed:
	// none of the tenant's writes commits above it until the pause ends.
	Revision int64
	// Took is how long the replicas took to confirm.
	Took time.Duration
}

func (g *Gateway) servePause(w http.ResponseWriter, r *http.Request) {
	hold := 30 * time.Second
	if q := r.URL.Query().Get("hold"); q != "" {
		d, err := time.ParseDuration(q)
		if err != nil || d <= 0 || d > 10*time.Minute {
			http.Error(w, fmt.Sprintf("query parameter hold=%q: give a duration up to 10m, such as 30s", q), http.StatusBadRequest)
			return
		}
		hold = d
	}
	src, ok := g.adminSource(w, r)
	if !ok {
		return
	}
	start := time.Now()
	rev, err := PauseTenant(r.Context(), g.cli, src.TenantID, hold, min(hold, 10*time.Second))
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrPauseUnconfirmed) {
			code = http.StatusGatewayTimeout
		}
		http.Error(w, err.Error(), code)
		return
	}
	a := PauseAnswer{Revision: rev, Took: time.Since(start)}
	g.log.Info("paused a tenant's writes", "tenant", src.TenantID, "revision", rev, "hold", hold, "took", a.Took.Round(time.Millisecond))
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(a)
}

func (g *Gateway) serveResume(w http.ResponseWriter, r *http.Request) {
	src, ok := g.adminSource(w, r)
	if !ok {
		return
	}
	if err := ResumeTenant(r.Context(), g.cli, src.TenantID); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	g.log.Info("resumed a tenant's writes", "tenant", src.TenantID)
	w.WriteHeader(http.StatusNoContent)
}

// DecodeManifest reads a manifest from its header form.
func DecodeManifest(s string) (backup.Manifest, error) {
	var m backup.Manifest
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return m, fmt.Errorf("not base64: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("not a manifest: %w", err)
	}
	return m, m.Validate()
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
