package frontdoor

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// errHelloRead stops crypto/tls's handshake once it has parsed the
// ClientHello: the front door only wants the name.
var errHelloRead = errors.New("client hello read")

// ReadServerName reads a TLS ClientHello from conn and returns the server
// name it asks for (empty when the client sent none) and every byte read,
// which must be sent on to the backend before the rest of the stream.
// crypto/tls does the parsing: its server handshake runs over a
// connection that records what it reads and discards what it writes, and
// is stopped at GetConfigForClient.
func ReadServerName(conn net.Conn) (string, []byte, error) {
	var buf bytes.Buffer
	var name string
	seen := false
	err := tls.Server(recordingConn{r: io.TeeReader(conn, &buf)}, &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			name, seen = hello.ServerName, true
			return nil, errHelloRead
		},
	}).Handshake()
	if !seen {
		if err == nil {
			err = errors.New("no ClientHello")
		}
		return "", buf.Bytes(), err
	}
	return name, buf.Bytes(), nil
}

// recordingConn is the read side of a connection for crypto/tls's
// server: writes (its alerts) go nowhere, so the client sees nothing of
// the aborted handshake.
type recordingConn struct{ r io.Reader }

func (c recordingConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c recordingConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c recordingConn) Close() error                     { return nil }
func (c recordingConn) LocalAddr() net.Addr              { return nil }
func (c recordingConn) RemoteAddr() net.Addr             { return nil }
func (c recordingConn) SetDeadline(time.Time) error      { return nil }
func (c recordingConn) SetReadDeadline(time.Time) error  { return nil }
func (c recordingConn) SetWriteDeadline(time.Time) error { return nil }
