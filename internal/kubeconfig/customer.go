package kubeconfig

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"kubinception.dev/kubinception/internal/pki"
)

// Customer credentials are client certificates of the tenant's CA whose
// group carries a generation: group "kubinception:customer-admins:g3",
// user "kubinception:customer:g3:<id>". The operator binds only the
// current generation's group to cluster-admin inside the tenant, so
// revoking every customer credential issued so far is one step: raise the
// generation. Older certificates still authenticate but are authorized for
// nothing; nothing has to reach the holders or wait for expiry.
const (
	// CustomerGroupPrefix starts every customer group; the generation
	// follows it.
	CustomerGroupPrefix = "kubinception:customer-admins:g"
	// CustomerUserPrefix starts every customer user name; the generation
	// and the credential's id follow it.
	CustomerUserPrefix = "kubinception:customer:g"

	// AnnotationCustomerGeneration on a TenantCluster is the generation
	// new customer credentials are issued for (absent: 1). `kubinception
	// revoke kubeconfigs` raises it.
	AnnotationCustomerGeneration = "kubinception.dev/customer-credentials-generation"
	// AnnotationCustomerAuthorized on a TenantCluster is the generation
	// the operator has authorized inside the tenant, once every earlier
	// generation is authorized for nothing. The operator writes it.
	AnnotationCustomerAuthorized = "kubinception.dev/customer-credentials-authorized-generation"
)

// Lifetimes of customer kubeconfigs issued on request.
const (
	// DefaultCustomerTTL covers a working day with room to spare: a
	// person asks again tomorrow, and a leaked file is worthless the day
	// after.
	DefaultCustomerTTL = 24 * time.Hour
	// MaxCustomerTTL bounds what may be asked for: a week, for automation
	// renewed weekly. Longer-lived access belongs to identities the
	// tenant manages itself (service accounts).
	MaxCustomerTTL = 7 * 24 * time.Hour
	// MinCustomerTTL keeps a certificate usable past clock skew and the
	// time it takes to hand it over.
	MinCustomerTTL = time.Minute
)

// CustomerGroup is the group of customer credentials of generation gen.
func CustomerGroup(gen int) string { return CustomerGroupPrefix + strconv.Itoa(gen) }

// CustomerUser is the user name of the customer credential id of
// generation gen.
func CustomerUser(gen int, id string) string {
	return CustomerUserPrefix + strconv.Itoa(gen) + ":" + id
}

// CustomerIdentityGeneration returns the generation a customer user or
// group name carries, and false for a name that is not a customer
// identity.
func CustomerIdentityGeneration(name string) (int, bool) {
	var rest string
	switch {
	case strings.HasPrefix(name, CustomerGroupPrefix):
		rest = strings.TrimPrefix(name, CustomerGroupPrefix)
	case strings.HasPrefix(name, CustomerUserPrefix):
		rest, _, _ = strings.Cut(strings.TrimPrefix(name, CustomerUserPrefix), ":")
	default:
		return 0, false
	}
	gen, err := strconv.Atoi(rest)
	if err != nil || gen < 1 || strconv.Itoa(gen) != rest {
		return 0, false
	}
	return gen, true
}

// ParseGeneration reads a generation annotation: absent or empty is 1.
func ParseGeneration(annotations map[string]string, key string) (int, error) {
	v, ok := annotations[key]
	if !ok || v == "" {
		return 1, nil
	}
	gen, err := strconv.Atoi(v)
	if err != nil || gen < 1 {
		return 0, fmt.Errorf("annotation %s=%q: want a whole number of at least 1 (kubinception revoke kubeconfigs sets it)", key, v)
	}
	return gen, nil
}

// ValidateTTL checks a requested lifetime against the bounds; the error
// names the flag.
func ValidateTTL(ttl time.Duration) error {
	switch {
	case ttl < MinCustomerTTL:
		return fmt.Errorf("--ttl %s: a kubeconfig must live at least %s", ttl, MinCustomerTTL)
	case ttl > MaxCustomerTTL:
		return fmt.Errorf("--ttl %s: a kubeconfig may live at most %s (7 days); for longer-lived access create a service account in the tenant", ttl, MaxCustomerTTL)
	}
	return nil
}

// CustomerRequest is one customer kubeconfig to issue.
type CustomerRequest struct {
	// ClusterName names the cluster and context in the kubeconfig.
	ClusterName string
	// Server is the tenant API server's URL.
	Server string
	// CA is the tenant's CA, with its key.
	CA *pki.KeyPair
	// Generation is the tenant's current customer generation.
	Generation int
	// ID tells this credential apart in the tenant's audit log; empty:
	// a random one.
	ID string
	// TTL is how long the certificate is valid from Now; it ends no later
	// than the CA.
	TTL time.Duration
	Now time.Time
}

// Customer is an issued customer kubeconfig.
type Customer struct {
	Kubeconfig []byte
	Cert       *x509.Certificate
	User       string
	KeyPEM     []byte
	CertPEM    []byte
}

// IssueCustomer signs a client certificate for the customer group of the
// request's generation and renders the kubeconfig that uses it.
func IssueCustomer(req CustomerRequest) (*Customer, error) {
	if req.Generation < 1 {
		return nil, fmt.Errorf("customer generation %d: want at least 1", req.Generation)
	}
	if req.TTL <= 0 {
		return nil, fmt.Errorf("customer kubeconfig lifetime %s: want a positive duration", req.TTL)
	}
	if req.CA == nil || req.CA.Cert == nil || req.CA.Key == nil || !req.CA.Cert.IsCA {
		return nil, fmt.Errorf("customer kubeconfig for %s: no CA with its key", req.ClusterName)
	}
	id := req.ID
	if id == "" {
		b := make([]byte, 4)
		if _, err := rand.Read(b); err != nil {
			return nil, err
		}
		id = hex.EncodeToString(b)
	}
	user := CustomerUser(req.Generation, id)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %s: %w", user, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	notAfter := req.Now.Add(req.TTL)
	if notAfter.After(req.CA.Cert.NotAfter) {
		notAfter = req.CA.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: user, Organization: []string{CustomerGroup(req.Generation)}},
		// Back-dated a little, as every other certificate of the tenant,
		// so an API server whose clock is behind accepts it at once.
		NotBefore:      req.Now.Add(-5 * time.Minute),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		AuthorityKeyId: req.CA.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, req.CA.Cert, &key.PublicKey, req.CA.Key)
	if err != nil {
		return nil, fmt.Errorf("sign %s: %w", user, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	kc, err := Render(Config{ClusterName: req.ClusterName, Server: req.Server, CAPEM: req.CA.CertPEM,
		UserName: user, CertPEM: certPEM, KeyPEM: keyPEM})
	if err != nil {
		return nil, err
	}
	return &Customer{Kubeconfig: kc, Cert: cert, User: user, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}
