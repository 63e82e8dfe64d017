package gatewaydeploy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"kubinception.dev/kubinception/internal/gateway"
)

// UsageReader reads every tenant's usage from a gateway's /usage endpoint
// and keeps each answer for TTL, so the reconciles of a datastore's many
// tenants make one request between them.
type UsageReader struct {
	Client *http.Client
	TTL    time.Duration
	Now    func() time.Time

	mu    sync.Mutex
	cache map[string]usageEntry
}

type usageEntry struct {
	at      time.Time
	tenants map[string]gateway.TenantUsage
}

// NewUsageReader returns a reader with a short timeout and a TTL of ttl.
func NewUsageReader(ttl time.Duration) *UsageReader {
	return &UsageReader{Client: &http.Client{Timeout: 5 * time.Second}, TTL: ttl, Now: time.Now}
}

// Read returns the usage of every tenant of the gateway at url, by tenant
// ID.
func (u *UsageReader) Read(ctx context.Context, url string) (map[string]gateway.TenantUsage, error) {
	now := u.Now()
	u.mu.Lock()
	if e, ok := u.cache[url]; ok && now.Sub(e.at) < u.TTL {
		u.mu.Unlock()
		return e.tenants, nil
	}
	u.mu.Unlock()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read usage from the gateway: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read usage from the gateway: %s answered %s", url, resp.Status)
	}
	var list []gateway.TenantUsage
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, fmt.Errorf("read usage from the gateway: %w", err)
	}
	tenants := make(map[string]gateway.TenantUsage, len(list))
	for _, t := range list {
		tenants[t.Tenant] = t
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.cache == nil {
		u.cache = map[string]usageEntry{}
	}
	u.cache[url] = usageEntry{at: now, tenants: tenants}
	return tenants, nil
}
