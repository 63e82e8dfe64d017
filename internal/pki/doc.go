// Package pki issues the certificates kubinception's clusters run on: one CA
// per trust domain and a certificate per component, all with ECDSA P-256
// keys, which are cheap to generate. Issuing is a pure function of a CA, a
// Spec and the current time; Dir keeps key pairs on disk and reissues a
// certificate only when it no longer matches its Spec or is close to expiry.
package pki
