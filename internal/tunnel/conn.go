package tunnel

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
)

// The wire names of the tunnel: the protocol an agent asks to switch to,
// the path it asks on, and the headers that describe the node and the
// server.
const (
	Protocol    = "kubinception-tunnel/1"
	ConnectPath = "/v1/connect"
	// HeaderNode and HeaderNodeAddresses describe the agent's node: its
	// name and the addresses it reports (comma-separated IPs).
	HeaderNode          = "Kubinception-Node"
	HeaderNodeAddresses = "Kubinception-Node-Addresses"
	// HeaderServerID and HeaderServerCount tell the agent which server
	// replica answered and how many there are.
	HeaderServerID    = "Kubinception-Server-Id"
	HeaderServerCount = "Kubinception-Server-Count"
	// HeaderKnownServers lists the servers an agent holds a connection
	// to already: one of them answers 409 without taking the connection,
	// so a duplicate never carries a request.
	HeaderKnownServers = "Kubinception-Known-Servers"
	// AgentCommonName is the common name every agent certificate carries;
	// the server accepts no other client certificate from agents.
	AgentCommonName = "system:kubinception:tunnel-agent"
	// ClientCommonName is the common name of platform clients'
	// certificates (the tenant's load balancers), which only the operator
	// issues; NodesPath lists the nodes whose agents are connected.
	ClientCommonName = "system:kubinception:tunnel-client"
	NodesPath        = "/v1/nodes"
)

// bufferedConn is a connection whose first bytes may already sit in a
// bufio.Reader (read while parsing the HTTP/1.1 request or response that
// switched protocols). It reports when it is closed or fails.
type bufferedConn struct {
	net.Conn
	r *bufio.Reader

	once sync.Once
	done chan struct{}
}

func newBufferedConn(c net.Conn, r *bufio.Reader) *bufferedConn {
	return &bufferedConn{Conn: c, r: r, done: make(chan struct{})}
}

func (c *bufferedConn) Read(p []byte) (int, error) {
	var n int
	var err error
	if c.r != nil && c.r.Buffered() > 0 {
		n, err = c.r.Read(p)
	} else {
		n, err = c.Conn.Read(p)
	}
	if err != nil && !errors.Is(err, io.EOF) {
		c.finish()
	}
	return n, err
}

func (c *bufferedConn) Close() error {
	c.finish()
	return c.Conn.Close()
}

func (c *bufferedConn) finish() { c.once.Do(func() { close(c.done) }) }

// Done is closed once the connection is closed or a read fails.
func (c *bufferedConn) Done() <-chan struct{} { return c.done }

// CloseWrite half-closes the connection when the transport can.
func (c *bufferedConn) CloseWrite() error {
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return hc.CloseWrite()
	}
	return nil
}

// halfCloser is a stream that can end its sending side alone.
type halfCloser interface {
	io.ReadWriteCloser
	CloseWrite() error
}

// join copies between a and b in both directions. A side that ends
// cleanly half-closes the other, so a peer that finishes sending still
// gets its answer; an error on either side closes both.
func join(a, b halfCloser) (aToB, bToA int64) {
	var wg sync.WaitGroup
	var once sync.Once
	closeBoth := func() { once.Do(func() { _ = a.Close(); _ = b.Close() }) }
	pipe := func(dst, src halfCloser, n *int64) {
		defer wg.Done()
		var err error
		*n, err = copyBuffered(dst, src)
		if err != nil {
			closeBoth()
			return
		}
		_ = dst.CloseWrite()
	}
	wg.Add(2)
	go pipe(b, a, &aToB)
	go pipe(a, b, &bToA)
	wg.Wait()
	closeBoth()
	return aToB, bToA
}

// Join copies between a and b in both directions until both are done,
// half-closing where the connections can, and closes both.
func Join(a, b io.ReadWriteCloser) (aToB, bToA int64) {
	return join(asHalfCloser(a), asHalfCloser(b))
}

type noHalfClose struct{ io.ReadWriteCloser }

func (noHalfClose) CloseWrite() error { return nil }

func asHalfCloser(c io.ReadWriteCloser) halfCloser {
	if h, ok := c.(halfCloser); ok {
		return h
	}
	return noHalfClose{c}
}

// copyBuffers hold the buffers streams are copied with: large enough
// that a bulk transfer (port-forward) is not cut into many small
// flushed writes.
var copyBuffers = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

func copyBuffered(dst io.Writer, src io.Reader) (int64, error) {
	b := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(b)
	return io.CopyBuffer(dst, src, *b)
}

// serveStream joins an HTTP/2 CONNECT request's stream to conn after
// answering 200, and returns the bytes it carried each way. The request's half goes to conn until the peer ends its
// stream, which half-closes conn. conn's half goes back until conn
// closes; returning then ends the stream (an HTTP/2 handler cannot end
// its answer and keep reading).
func serveStream(w http.ResponseWriter, r *http.Request, conn halfCloser) (in, out int64) {
	defer conn.Close()
	rc := http.NewResponseController(w)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return 0, 0
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var err error
		if in, err = copyBuffered(conn, r.Body); err == nil {
			_ = conn.CloseWrite()
		} else {
			_ = conn.Close()
		}
	}()
	out, _ = copyBuffered(flushWriter{w: w, rc: rc}, conn)
	// conn is done: stop reading the request too, as returning would.
	_ = conn.Close()
	_ = r.Body.Close()
	<-done
	return in, out
}

// flushWriter sends every write at once: the bytes belong to an
// interactive connection.
type flushWriter struct {
	w  io.Writer
	rc *http.ResponseController
}

func (f flushWriter) Write(p []byte) (int, error) {
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
