package server

import (
	"net"
	"sync"
	"syscall"
	"time"
)

// disconnects notices callers that hang up while their request waits, so
// that their queued work is dropped and a run only they wait for stops.
// fasthttp gives a handler no such signal, so one goroutine peeks, every
// interval, at the socket of each waiting request: a read of zero bytes
// without blocking means the peer closed it. Peeking consumes nothing.
type disconnects struct {
	interval time.Duration
	mu       sync.Mutex
	watched  map[*watch]struct{}
	stop     chan struct{}
	once     sync.Once
}

type watch struct {
	raw    syscall.RawConn
	cancel func()
}

func newDisconnects(interval time.Duration) *disconnects {
	d := &disconnects{interval: interval, watched: map[*watch]struct{}{}, stop: make(chan struct{})}
	go d.run()
	return d
}

// watch calls cancel if conn's peer closes before unwatch is called.
// Connections that are not sockets (in-process tests) are not watched.
func (d *disconnects) watch(conn net.Conn, cancel func()) (unwatch func()) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	w := &watch{raw: raw, cancel: cancel}
	d.mu.Lock()
	d.watched[w] = struct{}{}
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.watched, w)
		d.mu.Unlock()
	}
}

func (d *disconnects) run() {
	t := time.NewTicker(d.interval)
	defer t.Stop()
	var batch []*watch
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		batch = batch[:0]
		d.mu.Lock()
		for w := range d.watched {
			batch = append(batch, w)
		}
		d.mu.Unlock()
		for _, w := range batch {
			if peerClosed(w.raw) {
				w.cancel()
			}
		}
	}
}

func peerClosed(raw syscall.RawConn) bool {
	closed := false
	raw.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = n == 0 && err == nil || err == syscall.ECONNRESET
	})
	return closed
}

func (d *disconnects) close() {
	d.once.Do(func() { close(d.stop) })
}
