package gateway

import (
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"

	"kubinception.dev/kubinception/internal/datastore"
)

// Limits are what one tenant may use. A zero rate means no limit; a zero
// quota means no quota.
type Limits struct {
	// QuotaBytes caps the bytes of keys and values under the tenant's
	// prefix.
	QuotaBytes int64
	// RequestsPerSecond is the tenant's sustained request rate; bursts
	// of twice as many are allowed.
	RequestsPerSecond float64
	// BytesPerSecond is the tenant's sustained rate of bytes written
	// and read.
	BytesPerSecond float64
}

// ErrUnknownTenant is returned by a Policy for a tenant that may not use
// the gateway (for example one whose TenantCluster is gone); its requests
// are refused.
var ErrUnknownTenant = errors.New("unknown tenant")

// Policy says what each tenant may use. Limits is called on a tenant's
// first request and again every PolicyRefresh, so an implementation may
// read a cache; it must be safe for concurrent use and must not block on
// the network.
type Policy interface {
	Limits(tenantID string) (Limits, error)
}

// StaticPolicy gives every tenant Default, except those in Overrides.
type StaticPolicy struct {
	Default   Limits
	Overrides map[string]Limits
}

// Limits implements Policy.
func (p StaticPolicy) Limits(id string) (Limits, error) {
	if l, ok := p.Overrides[id]; ok {
		return l, nil
	}
	return p.Default, nil
}

// Config is everything a gateway needs.
type Config struct {
	// Datastore is the gateway's own credential on the datastore (the
	// root user's client certificate): the only one, tenants hold none.
	Datastore datastore.Credentials

	// ListenAddress serves tenants' API servers (etcd gRPC over TLS).
	ListenAddress string
	// ServingCertFile and ServingKeyFile are the gateway's serving
	// certificate; TenantCAFile is the CA whose client certificates
	// identify tenants (common name tenant-<uid>). All three are read
	// again when they change, so a rotated Secret needs no restart.
	ServingCertFile string
	ServingKeyFile  string
	TenantCAFile    string

	// HTTPAddress serves /metrics, /usage, /healthz and /readyz over
	// plain HTTP; empty disables it.
	HTTPAddress string

	// AdminAddress serves the admin API (per-tenant backup and restore)
	// over TLS to clients with a certificate from the tenant CA whose
	// common name is AdminCommonName; empty disables it.
	AdminAddress string

	// Policy gives each tenant's quota and rates.
	Policy Policy
	// PolicyRefresh is how often a tenant's limits are read again.
	PolicyRefresh time.Duration

	// MaxInFlight bounds the unary requests the gateway sends to the
	// datastore at once: about what the datastore serves without its
	// latency growing, so that requests wait in the gateway, where they
	// are ordered fairly, and not inside the datastore. With k tenants
	// active each may hold ceil(MaxInFlight/k) of them; waiting tenants
	// are served in turn.
	MaxInFlight int
	// MaxQueuedPerTenant bounds a tenant's waiting requests; beyond it
	// requests are refused with "too many requests".
	MaxQueuedPerTenant int

	// CompactionInterval is how often the datastore is compacted at the
	// lowest revision every compacting tenant has asked for; zero leaves
	// compaction of the datastore to its own schedule.
	CompactionInterval time.Duration
	// CompactionStaleAfter drops a tenant that has not compacted for so
	// long (a hibernated one) from that minimum, so it cannot hold back
	// the datastore's compaction forever.
	CompactionStaleAfter time.Duration

	// Logger receives the gateway's logs.
	Logger logr.Logger
}

// DefaultConfig has the defaults of every tunable; addresses, files and
// credentials are left to the caller.
func DefaultConfig() Config {
	return Config{
		ListenAddress: ":2379",
		HTTPAddress:   ":8080",
		// The rates are the Datastore's defaultLimits defaults, so a
		// gateway run by hand and one run by the operator agree.
		Policy: StaticPolicy{Default: Limits{
			QuotaBytes:        2 << 30,
			RequestsPerSecond: 500,
			BytesPerSecond:    32 << 20,
		}},
		PolicyRefresh:        30 * time.Second,
		MaxInFlight:          8,
		MaxQueuedPerTenant:   1000,
		CompactionInterval:   time.Minute,
		CompactionStaleAfter: time.Hour,
		Logger:               logr.Discard(),
	}
}

func (c *Config) validate() error {
	var errs []error
	if len(c.Datastore.Endpoints) == 0 {
		errs = append(errs, errors.New("no datastore endpoints"))
	}
	if c.ServingCertFile == "" || c.ServingKeyFile == "" {
		errs = append(errs, errors.New("a serving certificate and key are required"))
	}
	if c.TenantCAFile == "" {
		errs = append(errs, errors.New("a tenant CA file is required: tenants are identified by their client certificates"))
	}
	if c.Policy == nil {
		errs = append(errs, errors.New("no policy"))
	}
	if c.MaxInFlight <= 0 {
		errs = append(errs, fmt.Errorf("max in-flight requests must be positive, not %d", c.MaxInFlight))
	}
	if c.MaxQueuedPerTenant <= 0 {
		errs = append(errs, fmt.Errorf("max queued requests per tenant must be positive, not %d", c.MaxQueuedPerTenant))
	}
	if c.PolicyRefresh <= 0 {
		c.PolicyRefresh = 30 * time.Second
	}
	return errors.Join(errs...)
}
