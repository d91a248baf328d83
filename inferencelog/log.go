package inferencelog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"log/slog"
	randv2 "math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for Config.
const (
	DefaultMaxFileBytes  = 64 << 20
	DefaultMaxFileAge    = 5 * time.Minute
	DefaultMaxQueueBytes = 64 << 20
	// rowGroupBytes is about how much a file buffers before it writes a
	// row group: the writer's memory, whatever the file's size.
	rowGroupBytes = 4 << 20
	// maxQueued bounds the records waiting, whatever their size.
	maxQueued = 4096
)

// Config is where the log goes and what it keeps.
type Config struct {
	Dir string
	// Sample is the share of requests logged, from 0 to 1.
	Sample float64
	// Functions are those logged (empty: every one).
	Functions []string
	// Errors logs failed requests too, with their error.
	Errors bool
	// A file is closed, and a new one begun, at MaxFileBytes or
	// MaxFileAge, whichever comes first.
	MaxFileBytes int64
	MaxFileAge   time.Duration
	// MaxQueueBytes bounds the memory of the requests waiting to be
	// written: past it, a request is dropped whole and counted.
	MaxQueueBytes int64
	Registerer    prometheus.Registerer
	Log           *slog.Logger
	// Sink, when set, is what each file's bytes go through (a rate
	// limit; tests stand a slow disk with it).
	Sink func(io.Writer) io.Writer
}

// Log writes sampled requests to rolling Parquet files in one folder. Add
// never blocks: a writer that falls behind drops whole requests and
// counts them.
type Log struct {
	cfg       Config
	functions map[string]bool

	// mu orders Add against Close: no record is sent once the queue is
	// closed.
	mu     sync.RWMutex
	closed bool
	queue  chan *Record
	queued atomic.Int64 // bytes of the records in queue
	done   chan struct{}

	lock *os.File
	// The writer goroutine's own.
	cur      *file
	seq      int
	manifest Manifest
	rows     []Row
	scratch  []byte

	logged, dropped, failed prometheus.Counter
	rowsLogged, files       prometheus.Counter
}

// file is the Parquet file being written: under a hidden partial name
// until it is closed whole, then renamed and added to the manifest.
type file struct {
	f        *os.File
	count    *counter
	w        *parquet.GenericWriter[Row]
	partial  string
	name     string
	opened   time.Time
	rows     int64
	requests int64
	first    time.Time
	last     time.Time
	// buffered estimates the bytes written to w since its last row group.
	buffered int64
}

// counter counts and hashes the bytes on their way to the file.
type counter struct {
	w   io.Writer
	n   int64
	sum hash.Hash
}

func (c *counter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.sum.Write(p[:n])
	return n, err
}

// Open starts a log in cfg.Dir: it takes the folder's lock (one server a
// folder), removes what a killed server left half-written (never listed
// in the manifest) and goes on from the manifest there.
func Open(cfg Config) (*Log, error) {
	if cfg.Sample < 0 || cfg.Sample > 1 {
		return nil, fmt.Errorf("the inference log's sample is a share of requests, from 0 to 1; got %g", cfg.Sample)
	}
	if cfg.MaxFileBytes <= 0 {
		cfg.MaxFileBytes = DefaultMaxFileBytes
	}
	if cfg.MaxFileAge <= 0 {
		cfg.MaxFileAge = DefaultMaxFileAge
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = DefaultMaxQueueBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	// The log holds what callers sent: readable by this user alone (a
	// loader reads it as the same user, or through the group a volume
	// gives).
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("inference log: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(cfg.Dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("inference log: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("inference log: another process writes to %s (give each server its own folder): %w", cfg.Dir, err)
	}
	l := &Log{cfg: cfg, queue: make(chan *Record, maxQueued), done: make(chan struct{}), lock: lock}
	if len(cfg.Functions) > 0 {
		l.functions = map[string]bool{}
		for _, f := range cfg.Functions {
			l.functions[f] = true
		}
	}
	if err := l.resume(); err != nil {
		lock.Close()
		return nil, err
	}
	if err := l.register(); err != nil {
		lock.Close()
		return nil, err
	}
	go l.run()
	return l, nil
}

// resume reads the folder's manifest and removes partial files: a
// killed server's, cut short, never listed.
func (l *Log) resume() error {
	m, err := ReadManifest(l.cfg.Dir)
	if err != nil {
		return err
	}
	l.manifest = m
	for _, f := range m.Files {
		var seq int
		if _, err := fmt.Sscanf(f.Seq(), "%d", &seq); err == nil && seq > l.seq {
			l.seq = seq
		}
	}
	partials, _ := filepath.Glob(filepath.Join(l.cfg.Dir, ".*.parquet.partial"))
	for _, p := range partials {
		os.Remove(p)
	}
	if len(partials) > 0 {
		l.cfg.Log.Warn("inference log: removed files a stopped server left unfinished", "dir", l.cfg.Dir, "files", len(partials))
	}
	return nil
}

func (l *Log) register() error {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_inference_log_requests_total",
		Help: "Sampled requests for the inference log: logged (in a file closed whole and listed in the manifest), dropped (the writer was behind: the queue was full) or failed (their file could not be written).",
	}, []string{"outcome"})
	rows := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelserve_inference_log_rows_total", Help: "Rows in inference log files closed whole and listed in the manifest.",
	})
	files := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelserve_inference_log_files_total", Help: "Inference log files closed whole and listed in the manifest.",
	})
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelserve_inference_log_queue_bytes", Help: "Memory held by sampled requests waiting for the inference log's writer.",
	}, func() float64 { return float64(l.queued.Load()) })
	for _, c := range []prometheus.Collector{requests, rows, files, queued} {
		if err := l.cfg.Registerer.Register(c); err != nil {
			return err
		}
	}
	l.logged, l.dropped, l.failed = requests.WithLabelValues("logged"), requests.WithLabelValues("dropped"), requests.WithLabelValues("failed")
	l.rowsLogged, l.files = rows, files
	return nil
}

// Sampled decides whether a request to function is logged.
func (l *Log) Sampled(function string) bool {
	if l == nil || l.cfg.Sample <= 0 || l.functions != nil && !l.functions[function] {
		return false
	}
	return l.cfg.Sample >= 1 || randv2.Float64() < l.cfg.Sample
}

// Errors reports whether failed requests are logged.
func (l *Log) Errors() bool { return l != nil && l.cfg.Errors }

// Add queues a record for the writer, or drops it (counted) when the
// writer is behind. It never blocks.
func (l *Log) Add(r *Record) {
	size := r.size()
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		l.dropped.Inc()
		return
	}
	if l.queued.Add(size) > l.cfg.MaxQueueBytes {
		l.queued.Add(-size)
		l.dropped.Inc()
		return
	}
	select {
	case l.queue <- r:
	default:
		l.queued.Add(-size)
		l.dropped.Inc()
	}
}

// Close writes what is queued (within ctx), closes the file being
// written and lists it.
func (l *Log) Close(ctx context.Context) error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	defer l.lock.Close()
	select {
	case <-l.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("inference log: %w before what was queued was written", ctx.Err())
	}
}

// run is the writer: records in, files out.
func (l *Log) run() {
	defer close(l.done)
	tick := time.NewTicker(min(l.cfg.MaxFileAge/4, time.Second))
	defer tick.Stop()
	for {
		select {
		case r, ok := <-l.queue:
			if !ok {
				l.finish()
				return
			}
			l.write(r)
			l.queued.Add(-r.size())
		case <-tick.C:
			if l.cur != nil && time.Since(l.cur.opened) >= l.cfg.MaxFileAge {
				l.finish()
			}
		}
	}
}

// write adds a record's rows to the current file, beginning one if need
// be, and closes the file once it is large enough.
func (l *Log) write(r *Record) {
	if l.cur == nil {
		if err := l.begin(); err != nil {
			l.failed.Inc()
			l.cfg.Log.Error("inference log: cannot begin a file; the request is not logged", "error", err)
			return
		}
	}
	f := l.cur
	f.requests++ // the file's now: lost with it if it fails
	l.rows, l.scratch = r.rows(l.rows[:0], requestID(), l.scratch)
	if _, err := f.w.Write(l.rows); err != nil {
		l.lose(err)
		return
	}
	for i := range l.rows {
		row := &l.rows[i]
		f.buffered += int64(160 + len(row.Inputs) + len(row.Outputs) + len(row.InputData) + len(row.Error))
		*row = Row{} // no reference kept to the record
	}
	f.rows += int64(len(l.rows))
	if f.first.IsZero() || r.Time.Before(f.first) {
		f.first = r.Time
	}
	if r.Time.After(f.last) {
		f.last = r.Time
	}
	if f.buffered >= rowGroupBytes {
		if err := f.w.Flush(); err != nil {
			l.lose(err)
			return
		}
		f.buffered = 0
	}
	if f.count.n+f.buffered >= l.cfg.MaxFileBytes {
		l.finish()
	}
}

// begin opens the next file under its partial name.
func (l *Log) begin() error {
	l.seq++
	now := time.Now().UTC()
	name := fmt.Sprintf("%s-%06d.parquet", now.Format("20060102T150405.000Z"), l.seq)
	partial := filepath.Join(l.cfg.Dir, "."+name+".partial")
	f, err := os.OpenFile(partial, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	var w io.Writer = f
	if l.cfg.Sink != nil {
		w = l.cfg.Sink(f)
	}
	c := &counter{w: w, sum: sha256.New()}
	l.cur = &file{f: f, count: c, partial: partial, name: name, opened: time.Now(),
		w: parquet.NewGenericWriter[Row](c, parquet.Compression(&parquet.Zstd), parquet.CreatedBy("modelserve", "", ""))}
	return nil
}

// finish closes the current file whole (footer written, synced), renames
// it to its final name and lists it in the manifest, in that order: the
// manifest never names a file that is not whole.
func (l *Log) finish() {
	f := l.cur
	if f == nil {
		return
	}
	if err := f.w.Close(); err != nil {
		l.lose(err)
		return
	}
	err := f.f.Sync()
	if cerr := f.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.partial, filepath.Join(l.cfg.Dir, f.name))
	}
	if err == nil {
		err = syncDir(l.cfg.Dir)
	}
	if err != nil {
		l.cur = nil
		os.Remove(f.partial)
		l.failed.Add(float64(f.requests))
		l.cfg.Log.Error("inference log: a file could not be closed; its requests are lost", "file", f.name, "requests", f.requests, "error", err)
		return
	}
	l.cur = nil
	l.manifest.Files = append(l.manifest.Files, FileInfo{File: f.name, Rows: f.rows, Requests: f.requests, Bytes: f.count.n,
		First: f.first.UTC(), Last: f.last.UTC(), SHA256: hex.EncodeToString(f.count.sum.Sum(nil))})
	if err := writeManifest(l.cfg.Dir, l.manifest); err != nil {
		// The file is whole; the next manifest written lists it.
		l.cfg.Log.Error("inference log: the manifest could not be written", "error", err)
	}
	l.files.Inc()
	l.logged.Add(float64(f.requests))
	l.rowsLogged.Add(float64(f.rows))
}

// lose gives up the current file after a write failed.
func (l *Log) lose(err error) {
	f := l.cur
	l.cur = nil
	f.f.Close()
	os.Remove(f.partial)
	l.failed.Add(float64(f.requests))
	l.cfg.Log.Error("inference log: writing a file failed; its requests are lost", "file", f.name, "requests", f.requests, "error", err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// requestID names a logged request: its rows share it.
func requestID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
