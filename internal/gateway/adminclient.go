package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"filippo.io/age"

	"kubinception.dev/kubinception/internal/backup"
)

// AdminClient calls a gateway's admin API.
type AdminClient struct {
	base string
	http *http.Client
}

// NewAdminClient calls the admin API at addr (host:port) with tc, which
// presents the admin certificate (AdminCommonName) and trusts the CA of
// the gateway's serving certificate.
func NewAdminClient(addr string, tc *tls.Config) *AdminClient {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc.Clone()
	tr.ForceAttemptHTTP2 = true
	return &AdminClient{base: "https://" + addr, http: &http.Client{Transport: tr}}
}

func (c *AdminClient) url(tenantID, op string, q url.Values) string {
	u := c.base + "/v1/tenants/" + url.PathEscape(tenantID) + "/" + op
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// Snapshotter backs the tenant up through the gateway, encrypted to to,
// and checks that what arrived is what the gateway wrote.
func (c *AdminClient) Snapshotter(tenantID string, to *age.X25519Recipient) backup.Snapshotter {
	return func(ctx context.Context, w io.Writer) (backup.Manifest, error) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(tenantID, "backup", nil), nil)
		if err != nil {
			return backup.Manifest{}, err
		}
		req.Header.Set(HeaderRecipient, to.String())
		resp, err := c.http.Do(req)
		if err != nil {
			return backup.Manifest{}, fmt.Errorf("gateway backup of tenant %s: %w", tenantID, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return backup.Manifest{}, responseError(resp, "backup of tenant "+tenantID)
		}
		h := sha256.New()
		n, err := io.Copy(io.MultiWriter(w, h), resp.Body)
		if err != nil {
			return backup.Manifest{}, fmt.Errorf("gateway backup of tenant %s: %w", tenantID, err)
		}
		if msg := resp.Trailer.Get(TrailerError); msg != "" {
			return backup.Manifest{}, fmt.Errorf("gateway backup of tenant %s: %s", tenantID, msg)
		}
		m, err := DecodeManifest(resp.Trailer.Get(HeaderManifest))
		if err != nil {
			return backup.Manifest{}, fmt.Errorf("gateway backup of tenant %s ended without a manifest: %w", tenantID, err)
		}
		if sum := hex.EncodeToString(h.Sum(nil)); n != m.ArchiveBytes || sum != m.SHA256 {
			return backup.Manifest{}, fmt.Errorf("gateway backup of tenant %s: received %d bytes (SHA-256 %s), the gateway wrote %d (%s)", tenantID, n, sum, m.ArchiveBytes, m.SHA256)
		}
		return m, nil
	}
}

// Restorer restores archives into the tenant through the gateway.
func (c *AdminClient) Restorer(tenantID string, id *age.X25519Identity, mode backup.RestoreMode) backup.Restorer {
	return func(ctx context.Context, r io.Reader, m backup.Manifest) (backup.Result, error) {
		q := url.Values{"mode": {"empty"}}
		if mode == backup.Replace {
			q.Set("mode", "replace")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url(tenantID, "restore", q), r)
		if err != nil {
			return backup.Result{}, err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return backup.Result{}, err
		}
		req.Header.Set(HeaderManifest, base64.StdEncoding.EncodeToString(b))
		req.Header.Set(HeaderIdentity, id.String())
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := c.http.Do(req)
		if err != nil {
			return backup.Result{}, fmt.Errorf("gateway restore into tenant %s: %w", tenantID, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			err := responseError(resp, "restore into tenant "+tenantID)
			if resp.StatusCode == http.StatusConflict {
				err = fmt.Errorf("%w (%v)", backup.ErrNotEmpty, err)
			}
			return backup.Result{}, err
		}
		var res backup.Result
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			return backup.Result{}, fmt.Errorf("gateway restore into tenant %s: read the result: %w", tenantID, err)
		}
		return res, nil
	}
}

func responseError(resp *http.Response, what string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("gateway %s: %s: %s", what, resp.Status, strings.TrimSpace(string(b)))
}

// Pause holds the tenant's writes on every gateway replica for at most
// hold, and returns once every replica confirmed.
func (c *AdminClient) Pause(ctx context.Context, tenantID string, hold time.Duration) (PauseAnswer, error) {
	var a PauseAnswer
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.url(tenantID, "pause", url.Values{"hold": {hold.String()}}), nil)
	if err != nil {
		return a, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return a, fmt.Errorf("pause tenant %s: %w", tenantID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a, responseError(resp, "pause of tenant "+tenantID)
	}
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		return a, fmt.Errorf("pause of tenant %s: answer: %w", tenantID, err)
	}
	return a, nil
}

// Resume lets the tenant's writes through again.
func (c *AdminClient) Resume(ctx context.Context, tenantID string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.url(tenantID, "pause", nil), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("resume tenant %s: %w", tenantID, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return responseError(resp, "resume of tenant "+tenantID)
	}
	return nil
}
