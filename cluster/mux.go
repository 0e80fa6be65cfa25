package cluster

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// The first byte of every connection to the cluster port says who it is for.
const (
	muxRaft byte = 'R' // hashicorp/raft's NetworkTransport
	muxRPC  byte = 'F' // forwarding RPC (rpc.go)
)

// muxHeaderTimeout bounds how long an accepted connection may take to
// send its first byte.
const muxHeaderTimeout = 5 * time.Second

var errMuxClosed = errors.New("cluster port closed")

// mux serves one TCP listener for raft and the forwarding RPC, like
// rqlite's. It owns every connection it accepted and closes them at Close,
// so no handler goroutine outlives the node.
type mux struct {
	ln         net.Listener
	advertise  net.Addr
	logger     *slog.Logger
	serveRPC   func(net.Conn)
	raftConns  chan net.Conn
	closing    chan struct{}
	closeOnce  sync.Once
	wg         sync.WaitGroup
	mu         sync.Mutex
	conns      map[net.Conn]struct{}
	raftClosed chan struct{} // closed when raft's stream layer is closed
	raftOnce   sync.Once
}

func newMux(ln net.Listener, advertise net.Addr, logger *slog.Logger, serveRPC func(net.Conn)) *mux {
	return &mux{
		ln: ln, advertise: advertise, logger: logger, serveRPC: serveRPC,
		raftConns:  make(chan net.Conn),
		closing:    make(chan struct{}),
		conns:      map[net.Conn]struct{}{},
		raftClosed: make(chan struct{}),
	}
}

// start runs the accept loop.
func (m *mux) start() {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.acceptLoop()
	}()
}

func (m *mux) acceptLoop() {
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closing:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			m.logger.Error("cluster port accept failed", "error", err)
			return
		}
		if !m.track(conn) {
			_ = conn.Close()
			return
		}
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.route(conn)
		}()
	}
}

// track registers a connection to close at shutdown; false once closing.
func (m *mux) track(conn net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	select {
	case <-m.closing:
		return false
	default:
	}
	m.conns[conn] = struct{}{}
	return true
}

func (m *mux) untrack(conn net.Conn) {
	m.mu.Lock()
	delete(m.conns, conn)
	m.mu.Unlock()
}

func (m *mux) route(conn net.Conn) {
	var b [1]byte
	_ = conn.SetReadDeadline(time.Now().Add(muxHeaderTimeout))
	if _, err := conn.Read(b[:]); err != nil {
		m.untrack(conn)
		_ = conn.Close()
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	switch b[0] {
	case muxRaft:
		// raft closes the connection when done (which untracks it); we
		// close it at shutdown if raft has not.
		select {
		case m.raftConns <- &trackedConn{Conn: conn, m: m}:
		case <-m.raftClosed:
			m.untrack(conn)
			_ = conn.Close()
		case <-m.closing:
			_ = conn.Close()
		}
	case muxRPC:
		m.serveRPC(conn)
		m.untrack(conn)
		_ = conn.Close()
	default:
		m.logger.Warn("unknown protocol on cluster port", "byte", b[0], "remote", conn.RemoteAddr().String())
		m.untrack(conn)
		_ = conn.Close()
	}
}

// Close stops accepting, closes every tracked connection and waits for
// the handlers. It is idempotent.
func (m *mux) Close() {
	m.closeOnce.Do(func() {
		m.mu.Lock()
		close(m.closing)
		for c := range m.conns {
			_ = c.Close()
		}
		m.mu.Unlock()
		_ = m.ln.Close()
	})
	m.wg.Wait()
}

// trackedConn untracks itself from the mux when closed.
type trackedConn struct {
	net.Conn
	m    *mux
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() { c.m.untrack(c.Conn) })
	return c.Conn.Close()
}

// strAddr is a net.Addr for an advertised host:port.
type strAddr string

func (a strAddr) Network() string { return "tcp" }
func (a strAddr) String() string  { return string(a) }

// raftLayer is the raft.StreamLayer over the mux.
type raftLayer struct{ m *mux }

var _ raft.StreamLayer = raftLayer{}

func (l raftLayer) Accept() (net.Conn, error) {
	select {
	case c := <-l.m.raftConns:
		return c, nil
	case <-l.m.raftClosed:
		return nil, errMuxClosed
	case <-l.m.closing:
		return nil, errMuxClosed
	}
}

// Close is called by raft's transport; the mux itself closes later.
func (l raftLayer) Close() error {
	l.m.raftOnce.Do(func() { close(l.m.raftClosed) })
	return nil
}

func (l raftLayer) Addr() net.Addr { return l.m.advertise }

func (l raftLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return dialMux(string(addr), muxRaft, timeout)
}

// dialMux connects to a cluster port and announces the protocol.
func dialMux(addr string, proto byte, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write([]byte{proto}); err != nil {
		_ = conn.Close()
		return nil, err
	}
	_ = conn.SetWriteDeadline(time.Time{})
	return conn, nil
}
