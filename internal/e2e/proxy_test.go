package e2e

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// cuttingProxy relays TCP to a registry until clients have sent limit
// bytes, then closes every connection and stops listening: the registry
// "goes away" in the middle of a push.
type cuttingProxy struct {
	addr   string
	ln     net.Listener
	sent   atomic.Int64
	limit  int64
	isCut  atomic.Bool
	mu     sync.Mutex
	conns  []net.Conn
	target string
}

func startCuttingProxy(t *testing.T, target string, limit int64) *cuttingProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{addr: ln.Addr().String(), ln: ln, limit: limit, target: target}
	go p.serve()
	t.Cleanup(p.cutNow)
	return p
}

func (p *cuttingProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, up)
		p.mu.Unlock()
		go func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					if p.sent.Add(int64(n)) > p.limit {
						p.cutNow()
						return
					}
					if _, werr := up.Write(buf[:n]); werr != nil {
						return
					}
				}
				if err != nil {
					up.Close()
					return
				}
			}
		}()
		go func() { io.Copy(c, up); c.Close() }()
	}
}

func (p *cuttingProxy) cutNow() {
	if p.sent.Load() > p.limit {
		p.isCut.Store(true)
	}
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
}

func (p *cuttingProxy) cut() bool { return p.isCut.Load() }
