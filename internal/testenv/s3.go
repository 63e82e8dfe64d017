package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// VersityGWVersion is the S3-compatible server tests run (hack/deps
// builds it from its Go module into bin/tools).
const VersityGWVersion = "v1.8.0"

// S3Server is a real S3-compatible server (Versity's S3 gateway, on a
// POSIX directory) started for a test.
type S3Server struct {
	// Endpoint is its URL (http://host:port).
	Endpoint string
	// AccessKeyID and SecretAccessKey are its root credentials.
	AccessKeyID, SecretAccessKey string
	// Dir holds the buckets, one directory each.
	Dir string
}

// VersityGW returns the versitygw binary: $VERSITYGW, bin/tools/versitygw
// of this repository (hack/deps builds it there), or versitygw on the
// PATH. Without one the test skips, or fails when binaries are required.
func VersityGW(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("VERSITYGW"); p != "" {
		return p
	}
	if _, file, _, ok := runtime.Caller(0); ok {
		p := filepath.Join(filepath.Dir(file), "..", "..", "bin", "tools", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	missingTool(tb, "versitygw (an S3-compatible server) is not built: run hack/deps, which builds github.com/versity/versitygw "+VersityGWVersion+" into bin/tools, or set VERSITYGW; this test runs against a real S3 server")
	return ""
}

// StartS3Server starts an S3-compatible server listening on host (such as
// 127.0.0.1) at a free port, with random root credentials, and makes
// the bucket when it is not empty. It stops when the test ends.
func StartS3Server(tb testing.TB, host, bucket string) *S3Server {
	tb.Helper()
	bin := VersityGW(tb)
	dir := tb.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		tb.Fatal(err)
	}
	key := make([]byte, 20)
	if _, err := rand.Read(key); err != nil {
		tb.Fatal(err)
	}
	s := &S3Server{AccessKeyID: "kubi" + hex.EncodeToString(key[:8]), SecretAccessKey: hex.EncodeToString(key[8:]), Dir: data}
	var proc *Process
	for attempt := 0; ; attempt++ {
		addr := net.JoinHostPort(host, strconv.Itoa(FreePort(tb)))
		s.Endpoint = "http://" + addr
		cmd := exec.Command(bin, "--port", addr, "--quiet", "posix", "--sidecar", filepath.Join(dir, "meta"), data)
		// Credentials through the environment, not the command line.
		cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+s.AccessKeyID, "ROOT_SECRET_ACCESS_KEY="+s.SecretAccessKey)
		if err := os.MkdirAll(filepath.Join(dir, "meta"), 0o700); err != nil {
			tb.Fatal(err)
		}
		proc = StartProcess(tb, cmd, "versitygw", filepath.Join(dir, fmt.Sprintf("versitygw-%d.log", attempt)))
		err := waitHTTP(proc, s.Endpoint, 30*time.Second)
		if err == nil {
			break
		}
		if attempt == 2 {
			tb.Fatalf("versitygw did not start: %v\n%s", err, fileTail(proc.LogPath, 4<<10))
		}
	}
	if bucket != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := s.Client(tb).MakeBucket(ctx, bucket, minio.MakeBucketOptions{}); err != nil {
			tb.Fatalf("make bucket %s: %v", bucket, err)
		}
	}
	return s
}

// Client is a client of the server with its root credentials.
func (s *S3Server) Client(tb testing.TB) *minio.Client {
	tb.Helper()
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := minio.New(u.Host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKeyID, s.SecretAccessKey, ""), BucketLookup: minio.BucketLookupPath, Region: "us-east-1"})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// waitHTTP waits until the server answers HTTP (any status) or exits.
func waitHTTP(p *Process, endpoint string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := c.Get(endpoint + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-p.Exited:
			return fmt.Errorf("exited: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}
