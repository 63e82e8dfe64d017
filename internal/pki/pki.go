package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"slices"
	"time"
)

const (
	// CAValidity is how long a CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// CertValidity is how long a leaf certificate is valid.
	CertValidity = 365 * 24 * time.Hour
	// clockSkew back-dates certificates so a peer whose clock is a little
	// behind still accepts them.
	clockSkew = 5 * time.Minute
)

// KeyPair is a certificate and its private key, parsed and PEM-encoded.
type KeyPair struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// Spec says what a leaf certificate is for.
type Spec struct {
	CommonName   string
	Organization []string
	DNSNames     []string
	IPs          []net.IP
	// Server and Client select the extended key usages.
	Server bool
	Client bool
}

// NewCA creates a self-signed CA valid from now for CAValidity.
func NewCA(commonName string, now time.Time) (*KeyPair, error) {
	return NewCAFor(commonName, now, CAValidity)
}

// NewCAFor creates a self-signed CA valid from now for validity.
func NewCAFor(commonName string, now time.Time, validity time.Duration) (*KeyPair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate(validity)),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		SubjectKeyId:          keyID(&key.PublicKey),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign CA %q: %w", commonName, err)
	}
	return fromDER(der, key)
}

// Issue signs a new leaf certificate for spec with a fresh key, valid for
// CertValidity.
func (ca *KeyPair) Issue(spec Spec, now time.Time) (*KeyPair, error) {
	return ca.IssueFor(spec, now, CertValidity)
}

// IssueFor signs a new leaf certificate for spec with a fresh key, valid
// for validity but never beyond the CA.
func (ca *KeyPair) IssueFor(spec Spec, now time.Time, validity time.Duration) (*KeyPair, error) {
	if !spec.Server && !spec.Client {
		return nil, fmt.Errorf("certificate %q: a spec must allow server or client use", spec.CommonName)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate key for %q: %w", spec.CommonName, err)
	}
	var usages []x509.ExtKeyUsage
	if spec.Server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if spec.Client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial(),
		Subject:        pkix.Name{CommonName: spec.CommonName, Organization: spec.Organization},
		DNSNames:       spec.DNSNames,
		IPAddresses:    spec.IPs,
		NotBefore:      now.Add(-backdate(validity)),
		NotAfter:       notAfter,
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    usages,
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign certificate %q: %w", spec.CommonName, err)
	}
	return fromDER(der, key)
}

// ReuseInput is what the reuse policies look at: a certificate the
// operator holds, the CA that should have issued it, the spec and the
// lifetime it should have, and the time of the check.
type ReuseInput struct {
	CA       *KeyPair
	Cert     *x509.Certificate
	Spec     Spec
	Validity time.Duration
	Now      time.Time
}

// ReusePolicy returns a reason to reissue the certificate (and a message),
// or "" when it has nothing against keeping it.
type ReusePolicy func(in ReuseInput) (reason, message string)

// ReusePolicies decide, in order, whether a certificate can be kept; the
// first that returns a reason means reissue.
var ReusePolicies = []ReusePolicy{
	func(in ReuseInput) (string, string) {
		if err := in.Cert.CheckSignatureFrom(in.CA.Cert); err != nil {
			return "IssuerChanged", "not signed by the current CA"
		}
		return "", ""
	},
	func(in ReuseInput) (string, string) {
		if at := RenewalTime(in.Cert); !in.Now.Before(at) {
			return "Expiring", "two thirds of its life have passed (renewal due " + at.UTC().Format(time.RFC3339) + ", expires " + in.Cert.NotAfter.UTC().Format(time.RFC3339) + ")"
		}
		return "", ""
	},
	func(in ReuseInput) (string, string) {
		if !lifetimeMatches(in.Cert, in.CA.Cert, in.Validity) {
			return "LifetimeChanged", "issued for " + Lifetime(in.Cert).String() + ", the lifetime asked for is " + in.Validity.String()
		}
		return "", ""
	},
	func(in ReuseInput) (string, string) {
		if in.Cert.Subject.CommonName != in.Spec.CommonName || !sameStrings(in.Cert.Subject.Organization, in.Spec.Organization) {
			return "SubjectChanged", "subject changed"
		}
		return "", ""
	},
	func(in ReuseInput) (string, string) {
		if !sameStrings(in.Cert.DNSNames, in.Spec.DNSNames) {
			return "NamesChanged", "DNS names changed"
		}
		var want, have []string
		for _, ip := range in.Spec.IPs {
			want = append(want, ip.String())
		}
		for _, ip := range in.Cert.IPAddresses {
			have = append(have, ip.String())
		}
		if !sameStrings(want, have) {
			return "NamesChanged", "IP addresses changed"
		}
		return "", ""
	},
	func(in ReuseInput) (string, string) {
		if in.Spec.Server != slices.Contains(in.Cert.ExtKeyUsage, x509.ExtKeyUsageServerAuth) ||
			in.Spec.Client != slices.Contains(in.Cert.ExtKeyUsage, x509.ExtKeyUsageClientAuth) {
			return "UsagesChanged", "key usages changed"
		}
		return "", ""
	},
}

// Reissue runs the reuse policies on kp for a lifetime of CertValidity.
func (ca *KeyPair) Reissue(kp *KeyPair, spec Spec, now time.Time) (reason, message string) {
	return ca.ReissueFor(kp, spec, now, CertValidity)
}

// ReissueFor runs the reuse policies on kp: it returns "" when kp was
// issued by ca for exactly spec and validity and is not yet due for
// renewal (RenewalTime), otherwise the first reason to reissue and its
// message.
func (ca *KeyPair) ReissueFor(kp *KeyPair, spec Spec, now time.Time, validity time.Duration) (reason, message string) {
	in := ReuseInput{CA: ca, Cert: kp.Cert, Spec: spec, Validity: validity, Now: now}
	for _, p := range ReusePolicies {
		if reason, message := p(in); reason != "" {
			return reason, message
		}
	}
	return "", ""
}

// KeepOrNewCA returns the CA held in certPEM and keyPEM while it is a CA
// not yet due for renewal (RenewalTime), and a new CA otherwise. Only a
// CA whose certificates are all reissued at once may be replaced this
// way (the datastore gateway's tenant CA); a CA that machines outside the
// operator's reach trust is kept and rotated with overlap instead.
func KeepOrNewCA(certPEM, keyPEM []byte, commonName string, now time.Time) (*KeyPair, error) {
	if kp, err := ParseKeyPair(certPEM, keyPEM); err == nil && kp.Cert.IsCA && now.Before(RenewalTime(kp.Cert)) {
		return kp, nil
	}
	return NewCA(commonName, now)
}

// KeepOrIssue returns the certificate held in certPEM and keyPEM while the
// reuse policies keep it, and a new one issued by ca for spec otherwise.
func (ca *KeyPair) KeepOrIssue(certPEM, keyPEM []byte, spec Spec, now time.Time) (*KeyPair, error) {
	return ca.KeepOrIssueFor(certPEM, keyPEM, spec, now, CertValidity)
}

// KeepOrIssueFor is KeepOrIssue for certificates valid for validity.
func (ca *KeyPair) KeepOrIssueFor(certPEM, keyPEM []byte, spec Spec, now time.Time, validity time.Duration) (*KeyPair, error) {
	if kp, err := ParseKeyPair(certPEM, keyPEM); err == nil {
		if reason, _ := ca.ReissueFor(kp, spec, now, validity); reason == "" {
			return kp, nil
		}
	}
	return ca.IssueFor(spec, now, validity)
}

// ParseKeyPair parses PEM-encoded certificate and key and checks that they
// belong together.
func ParseKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate found")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate: %w", err)
	}
	key, err := ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, err
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, errors.New("private key does not match the certificate")
	}
	return &KeyPair{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

// ParsePrivateKey parses a PEM-encoded EC, PKCS#8 or PKCS#1 private key.
func ParsePrivateKey(keyPEM []byte) (crypto.Signer, error) {
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, errors.New("no PEM private key found")
	}
	switch kb.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(kb.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(kb.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		s, ok := k.(crypto.Signer)
		if !ok {
			return nil, errors.New("private key cannot sign")
		}
		return s, nil
	}
	return nil, fmt.Errorf("unsupported private key type %q", kb.Type)
}

// NewSigningKey creates the key pair the API server signs service-account
// tokens with, PEM-encoded: private key and public key.
func NewSigningKey() (keyPEM, pubPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate signing key: %w", err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return keyPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

func fromDER(der []byte, key *ecdsa.PrivateKey) (*KeyPair, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &KeyPair{
		Cert:    cert,
		Key:     key,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  keyPEM,
	}, nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return n
}

func keyID(pub *ecdsa.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	sum := sha256.Sum256(der)
	return sum[:20]
}

func sameStrings(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// Equal reports whether two key pairs hold the same certificate and key.
func (kp *KeyPair) Equal(other *KeyPair) bool {
	return other != nil && bytes.Equal(kp.CertPEM, other.CertPEM) && bytes.Equal(kp.KeyPEM, other.KeyPEM)
}
