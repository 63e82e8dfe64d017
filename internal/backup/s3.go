package backup

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3Config says where an S3-compatible bucket is and how to sign in to it.
type S3Config struct {
	// Endpoint is the server's URL: https://host[:port] (http:// only for
	// a server on a trusted network; archives are encrypted either way,
	// and requests are signed, never carrying the secret key).
	Endpoint string
	// Bucket holds the archives; it must exist.
	Bucket string
	// Prefix is put before every object name ("" or ending in "/"), so
	// one bucket can serve several admin clusters.
	Prefix string
	// Region is the bucket's region ("us-east-1" when empty).
	Region string
	// AccessKeyID and SecretAccessKey are the credentials.
	AccessKeyID, SecretAccessKey string
	// CAPEM, when set, are the only CAs the server's certificate is
	// checked against.
	CAPEM []byte
}

// s3PartSize is the size of the parts an archive is uploaded in: the
// archive's length is unknown until its end, so it is uploaded in parts,
// and one part is what the upload holds in memory.
const s3PartSize = 16 << 20

// S3 is a Target in an S3-compatible bucket. Each archive is two objects,
// PREFIX+NAME.kvs.age and PREFIX+NAME.json; an upload becomes visible
// only once complete (S3 writes objects whole), and every part carries a
// CRC32C checksum the server checks, beside the SHA-256 the manifest
// keeps of the whole archive.
type S3 struct {
	client *minio.Client
	bucket string
	prefix string
}

// NewS3 returns the bucket's Target. It makes no request.
func NewS3(c S3Config) (*S3, error) {
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("S3 endpoint %q must be a URL such as https://s3.example.com or http://10.0.0.5:9000, without a path", c.Endpoint)
	}
	if c.Bucket == "" {
		return nil, errors.New("no S3 bucket given")
	}
	if c.Prefix != "" && !strings.HasSuffix(c.Prefix, "/") {
		return nil, fmt.Errorf("S3 prefix %q must end with /", c.Prefix)
	}
	if c.AccessKeyID == "" || c.SecretAccessKey == "" {
		return nil, errors.New("no S3 credentials given (an access key ID and a secret access key)")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(c.CAPEM) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(c.CAPEM) {
			return nil, errors.New("the S3 CA bundle holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	region := c.Region
	if region == "" {
		region = "us-east-1"
	}
	client, err := minio.New(u.Host, &minio.Options{
		Creds:     credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, ""),
		Secure:    u.Scheme == "https",
		Transport: tr,
		Region:    region,
		// Path-style requests work with every S3-compatible server and
		// need no DNS name per bucket.
		BucketLookup: minio.BucketLookupPath,
	})
	if err != nil {
		return nil, fmt.Errorf("S3 client for %s: %w", c.Endpoint, err)
	}
	return &S3{client: client, bucket: c.Bucket, prefix: c.Prefix}, nil
}

// String names the bucket and prefix, as status shows it.
func (s *S3) String() string { return "s3://" + s.bucket + "/" + s.prefix }

// Put uploads an object in parts.
func (s *S3) Put(ctx context.Context, name string, r io.Reader) error {
	_, err := s.client.PutObject(ctx, s.bucket, s.prefix+name, r, -1, minio.PutObjectOptions{
		PartSize:    s3PartSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return fmt.Errorf("upload %s to %s: %w", name, s, s.explain(err))
	}
	return nil
}

// Get opens an object; a missing one is os.ErrNotExist.
func (s *S3) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.prefix+name, minio.GetObjectOptions{})
	if err == nil {
		// GetObject is lazy: Stat makes the request, so a missing
		// object is an error here rather than at the first read.
		if _, err = obj.Stat(); err != nil {
			obj.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("backup object %s in %s: %w", name, s, s.explain(err))
	}
	return obj, nil
}

// List lists objects by name prefix (within the target's prefix).
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var names []string
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: s.prefix + prefix}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s: %w", s, s.explain(o.Err))
		}
		name := strings.TrimPrefix(o.Key, s.prefix)
		if !strings.Contains(name, "/") {
			names = append(names, name)
		}
	}
	return names, nil
}

// Delete removes an object; removing a missing one succeeds, as S3 does.
func (s *S3) Delete(ctx context.Context, name string) error {
	if err := s.client.RemoveObject(ctx, s.bucket, s.prefix+name, minio.RemoveObjectOptions{}); err != nil {
		return fmt.Errorf("delete %s from %s: %w", name, s, s.explain(err))
	}
	return nil
}

// Check tells whether the bucket exists and the credentials may list it.
func (s *S3) Check(ctx context.Context) error {
	ok, err := s.client.BucketExists(ctx, s.bucket)
	if err != nil {
		return fmt.Errorf("%s: %w", s, s.explain(err))
	}
	if !ok {
		return fmt.Errorf("%s: the bucket does not exist: create it (kubinception does not create buckets)", s)
	}
	return nil
}

// explain maps the server's error codes a caller acts on: a missing
// object is os.ErrNotExist, a missing bucket or refused credentials say so.
func (s *S3) explain(err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey:
		return fmt.Errorf("%w: %w", os.ErrNotExist, err)
	case minio.NoSuchBucket:
		return fmt.Errorf("bucket %q does not exist: %w", s.bucket, err)
	case "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch":
		return fmt.Errorf("the S3 credentials were refused: %w", err)
	}
	return err
}
