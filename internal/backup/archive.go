package backup

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"

	"filippo.io/age"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// FormatVersion is the archive format this package writes and reads.
const FormatVersion = 1

// maxRecord bounds one record: etcd's largest request is 1.5 MiB by
// default, and a key and value never exceed it; anything much larger is a
// damaged archive, not a key.
const maxRecord = 64 << 20

// Manifest describes one archive. It is stored in clear beside the
// encrypted keys so backups can be listed without the key.
type Manifest struct {
	// Format is FormatVersion of the writer.
	Format int `json:"format"`
	// Tenant is the UID of the tenant the keys were copied from.
	Tenant string `json:"tenant"`
	// Revision is the datastore revision every key was read at.
	Revision int64 `json:"revision"`
	// Objects is the number of keys.
	Objects int `json:"objects"`
	// DataBytes is the size of keys and values, uncompressed.
	DataBytes int64 `json:"dataBytes"`
	// ArchiveBytes is the size of the encrypted object.
	ArchiveBytes int64 `json:"archiveBytes"`
	// SHA256 is the hex SHA-256 of the encrypted object.
	SHA256 string `json:"sha256"`
	// LeaseTTLs maps each lease some key was attached to (as an ID in
	// the source datastore) to the TTL in seconds it was granted with, so
	// a restore attaches the keys to fresh leases of the same length.
	LeaseTTLs map[int64]int64 `json:"leaseTTLs,omitempty"`
	// Started and Finished bound the copy.
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
}

// Validate checks that m can describe an archive this package reads.
func (m Manifest) Validate() error {
	switch {
	case m.Format != FormatVersion:
		return fmt.Errorf("archive format %d is not supported: this build reads format %d", m.Format, FormatVersion)
	case m.Revision <= 0:
		return errors.New("manifest has no revision")
	case len(m.SHA256) != sha256.Size*2:
		return errors.New("manifest has no SHA-256 of the archive")
	}
	return nil
}

// recordWriter writes KeyValue records: age(gzip(varint length, bytes...)).
type recordWriter struct {
	counted *countingWriter
	enc     io.WriteCloser
	zw      *gzip.Writer
	buf     []byte
	objects int
	bytes   int64
}

func newRecordWriter(w io.Writer, to age.Recipient) (*recordWriter, error) {
	counted := &countingWriter{w: w, h: sha256.New()}
	enc, err := age.Encrypt(counted, to)
	if err != nil {
		return nil, fmt.Errorf("encrypt the archive: %w", err)
	}
	return &recordWriter{counted: counted, enc: enc, zw: gzip.NewWriter(enc)}, nil
}

func (rw *recordWriter) write(kv *mvccpb.KeyValue) error {
	b, err := kv.Marshal()
	if err != nil {
		return fmt.Errorf("encode key %q: %w", kv.Key, err)
	}
	rw.buf = binary.AppendUvarint(rw.buf[:0], uint64(len(b)))
	if _, err := rw.zw.Write(rw.buf); err != nil {
		return err
	}
	if _, err := rw.zw.Write(b); err != nil {
		return err
	}
	rw.objects++
	rw.bytes += int64(len(kv.Key) + len(kv.Value))
	return nil
}

// close ends the streams; the archive is complete only after it returns
// nil.
func (rw *recordWriter) close() (size int64, sum string, err error) {
	if err := rw.zw.Close(); err != nil {
		return 0, "", fmt.Errorf("compress the archive: %w", err)
	}
	if err := rw.enc.Close(); err != nil {
		return 0, "", fmt.Errorf("encrypt the archive: %w", err)
	}
	return rw.counted.n, hex.EncodeToString(rw.counted.h.Sum(nil)), nil
}

// recordReader reads what recordWriter wrote, checking the archive's
// checksum when it reaches the end.
type recordReader struct {
	counted *countingReader
	want    Manifest
	br      *bufio.Reader
	zr      *gzip.Reader
	objects int
}

func newRecordReader(r io.Reader, id age.Identity, m Manifest) (*recordReader, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	counted := &countingReader{r: r, h: sha256.New()}
	dec, err := age.Decrypt(counted, id)
	if err != nil {
		return nil, fmt.Errorf("decrypt the archive (is this the backup key it was written for?): %w", err)
	}
	zr, err := gzip.NewReader(dec)
	if err != nil {
		return nil, fmt.Errorf("decompress the archive: %w", err)
	}
	return &recordReader{counted: counted, want: m, br: bufio.NewReader(zr), zr: zr}, nil
}

// next returns the next record, or io.EOF after the last one once the
// archive's length, checksum and object count matched the manifest.
func (rr *recordReader) next() (*mvccpb.KeyValue, error) {
	n, err := binary.ReadUvarint(rr.br)
	if errors.Is(err, io.EOF) {
		return nil, rr.finish()
	}
	if err != nil {
		return nil, fmt.Errorf("archive damaged after %d objects: %w", rr.objects, err)
	}
	if n > maxRecord {
		return nil, fmt.Errorf("archive damaged after %d objects: a record of %d bytes", rr.objects, n)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(rr.br, b); err != nil {
		return nil, fmt.Errorf("archive damaged after %d objects: %w", rr.objects, err)
	}
	kv := &mvccpb.KeyValue{}
	if err := kv.Unmarshal(b); err != nil {
		return nil, fmt.Errorf("archive damaged after %d objects: %w", rr.objects, err)
	}
	rr.objects++
	return kv, nil
}

func (rr *recordReader) finish() error {
	if err := rr.zr.Close(); err != nil {
		return err
	}
	// Read anything age left unread so the checksum covers the object.
	if _, err := io.Copy(io.Discard, rr.counted); err != nil {
		return fmt.Errorf("read the archive: %w", err)
	}
	sum := hex.EncodeToString(rr.counted.h.Sum(nil))
	switch {
	case rr.counted.n != rr.want.ArchiveBytes:
		return fmt.Errorf("archive is %d bytes, its manifest says %d", rr.counted.n, rr.want.ArchiveBytes)
	case sum != rr.want.SHA256:
		return fmt.Errorf("archive SHA-256 is %s, its manifest says %s", sum, rr.want.SHA256)
	case rr.objects != rr.want.Objects:
		return fmt.Errorf("archive holds %d objects, its manifest says %d", rr.objects, rr.want.Objects)
	}
	return io.EOF
}

type countingWriter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}

type countingReader struct {
	r io.Reader
	h hash.Hash
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}
