package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	promodel "github.com/prometheus/common/model"

	"github.com/modelserve/modelserve/onnxrt"
)

// env is what every section shares: the models, registered in a temporary
// registry, and the binary that serves them.
type env struct {
	o          options
	work       string
	registry   string
	models     string
	ortVersion string
}

// input describes one model input for generated requests.
type input struct {
	name  string
	width int
	vocab int // > 0: int64 ids below vocab; else float32 in [-1, 1)
}

type benchModel struct {
	name    string
	inputs  []input
	output  string
	outSize int
}

var (
	mlp     = benchModel{name: "mlp", inputs: []input{{name: "x", width: 64}}, output: "y", outSize: 8}
	encoder = benchModel{name: "encoder", inputs: []input{{name: "input_ids", width: 32, vocab: 8000}}, output: "embedding", outSize: 256}
	dlrm    = benchModel{name: "dlrm", inputs: []input{{name: "dense", width: 13}, {name: "sparse", width: 26, vocab: 1000}},
		output: "probability", outSize: 1}
	ceiling = benchModel{name: "ceiling", inputs: dlrm.inputs, output: "mean", outSize: 1}
)

func setup(o options) (*env, error) {
	rt, err := onnxrt.Load("")
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "modelserve-bench-")
	if err != nil {
		return nil, err
	}
	e := &env{o: o, work: work, registry: filepath.Join(work, "registry"), models: filepath.Join(work, "models"), ortVersion: rt.Version}
	all := []benchModel{mlp, encoder, dlrm, ceiling}
	args := []string{"scripts/models.py", e.models}
	for _, m := range all {
		args = append(args, m.name)
	}
	if out, err := exec.Command(o.python, args...).CombinedOutput(); err != nil {
		e.close()
		return nil, fmt.Errorf("generating models: %v\n%s", err, out)
	}
	for _, m := range all {
		cmd := exec.Command(o.binary, "--registry", e.registry, "registry", "log", "--name", m.name, "--version", "1",
			"--file", e.modelPath(m))
		if out, err := cmd.CombinedOutput(); err != nil {
			e.close()
			return nil, fmt.Errorf("registering %s: %v\n%s", m.name, err, out)
		}
	}
	return e, nil
}

func (e *env) modelPath(m benchModel) string { return filepath.Join(e.models, m.name+".onnx") }

func (e *env) close() { os.RemoveAll(e.work) }

// body is a request of rows rows. With flat, each row spreads its inputs
// over scalar arguments, as the SQL gateway sends them; else each input is
// one array.
func body(m benchModel, rows int, flat bool) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	b.WriteString(`{"data":[`)
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "[%d", r)
		for _, in := range m.inputs {
			b.WriteByte(',')
			if !flat {
				b.WriteByte('[')
			}
			for i := range in.width {
				if i > 0 {
					b.WriteByte(',')
				}
				if in.vocab > 0 {
					b.WriteString(strconv.FormatInt(rng.Int64N(int64(in.vocab)), 10))
				} else {
					b.WriteString(strconv.FormatFloat(float64(rng.Float32()*2-1), 'g', -1, 32))
				}
			}
			if !flat {
				b.WriteByte(']')
			}
		}
		b.WriteByte(']')
	}
	b.WriteString("]}")
	return b.Bytes()
}

// process is a running modelserve serve process.
type process struct {
	cmd  *exec.Cmd
	host string
	// grpc is the gRPC listener's address, when --grpc-port asked for one.
	grpc string
	done chan error
}

var (
	listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)
	grpcAddrRE  = regexp.MustCompile(`grpc_addr=(\S+)`)
)

func (e *env) serve(m benchModel, extra ...string) (*process, error) {
	return e.serveRef(m.name, extra...)
}

// serveRef serves a model named by a reference (NAME, NAME:VERSION or
// NAME:ALIAS).
func (e *env) serveRef(ref string, extra ...string) (*process, error) {
	return e.serveWith(e.o.binary, nil, ref, extra...)
}

// serveWith serves ref with another binary (the baseline the bench
// builds), its environment this one's plus environ.
func (e *env) serveWith(binary string, environ []string, ref string, extra ...string) (*process, error) {
	args := append([]string{"--registry", e.registry, "serve", "--model", ref, "--host", "127.0.0.1", "--port", "0", "--device", "cpu"}, extra...)
	cmd := exec.Command(binary, args...)
	if environ != nil {
		cmd.Env = append(os.Environ(), environ...)
	}
	// A bench stopped halfway must not leave servers loading the machine.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &process{cmd: cmd, done: make(chan error, 1)}
	addr, grpcAddr := make(chan string, 1), make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := grpcAddrRE.FindStringSubmatch(sc.Text()); m != nil {
				grpcAddr <- m[1]
			} else if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
		s.done <- cmd.Wait()
	}()
	wantGRPC := slices.Contains(extra, "--grpc-port")
	select {
	case s.host = <-addr:
		if wantGRPC {
			select {
			case s.grpc = <-grpcAddr:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				return nil, errors.New("modelserve did not log its gRPC address")
			}
		}
	case err := <-s.done:
		return nil, fmt.Errorf("modelserve exited: %v", err)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, errors.New("modelserve did not start")
	}
	// A server given a certificate answers HTTPS only; the probe is on
	// loopback, to a certificate this program made.
	probe, scheme := http.DefaultClient, "http"
	if slices.Contains(extra, "--tls-cert") {
		probe, scheme = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}, "https"
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := probe.Get(scheme + "://" + s.host + "/healthcheck"); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return s, nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return nil, errors.New("modelserve did not become ready")
}

func (s *process) stop() {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(time.Minute):
		s.cmd.Process.Kill()
	}
}

// families reads the server's /metrics.
func (s *process) families() (map[string]*dto.MetricFamily, error) {
	// A connection of its own each time: reading leaves nothing open in
	// the server between reads (the soak counts what stays open).
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + s.host + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(promodel.UTF8Validation)
	return parser.TextToMetricFamilies(resp.Body)
}

// buckets is a histogram's cumulative counts by upper bound, summed over
// its label sets.
type buckets map[float64]uint64

// histogram reads the buckets of a histogram now, of the label sets that
// have every label in match.
func (s *process) histogram(name string, match map[string]string) (buckets, error) {
	families, err := s.families()
	if err != nil {
		return nil, err
	}
	fam, ok := families[name]
	if !ok {
		return nil, fmt.Errorf("no metric %s", name)
	}
	b := buckets{}
metrics:
	for _, m := range fam.GetMetric() {
		for k, v := range match {
			if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == k && l.GetValue() == v }) {
				continue metrics
			}
		}
		for _, bk := range m.GetHistogram().GetBucket() {
			b[bk.GetUpperBound()] += bk.GetCumulativeCount()
		}
	}
	return b, nil
}

// quantile is the upper bound of the bucket holding quantile q of what
// was observed between before and b: a bound, as Prometheus's buckets
// allow; 0 when nothing was.
func (b buckets) quantile(before buckets, q float64) time.Duration {
	bounds := make([]float64, 0, len(b))
	var total uint64
	for ub, n := range b {
		total = max(total, n-before[ub])
		if !math.IsInf(ub, 1) {
			bounds = append(bounds, ub)
		}
	}
	slices.Sort(bounds)
	if len(bounds) == 0 || total == 0 {
		return 0
	}
	for _, ub := range bounds {
		if float64(b[ub]-before[ub]) >= q*float64(total) {
			return time.Duration(ub * float64(time.Second))
		}
	}
	return time.Duration(bounds[len(bounds)-1] * float64(time.Second)) // past the last bound
}

// metric sums a metric's samples from /metrics (histograms: name_sum and
// name_count are separate names).
func (s *process) metric(name string) (float64, error) {
	families, err := s.families()
	if err != nil {
		return 0, err
	}
	base, part := name, ""
	for _, suffix := range []string{"_sum", "_count"} {
		if strings.HasSuffix(name, suffix) {
			if _, ok := families[name]; !ok {
				base, part = strings.TrimSuffix(name, suffix), suffix
			}
		}
	}
	fam, ok := families[base]
	if !ok {
		return 0, fmt.Errorf("no metric %s", name)
	}
	total := 0.0
	for _, m := range fam.GetMetric() {
		switch {
		case part == "_sum":
			total += m.GetHistogram().GetSampleSum()
		case part == "_count":
			total += float64(m.GetHistogram().GetSampleCount())
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		}
	}
	return total, nil
}

// cpu is the CPU time the server process has used so far.
func (s *process) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command's closing parenthesis; utime and stime
	// are the 12th and 13th of them, in clock ticks (100 a second).
	rest := string(b[bytes.LastIndexByte(b, ')')+1:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0, fmt.Errorf("unexpected /proc stat: %q", rest)
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond, nil
}

// selfCPU is the CPU time this program (the load generator) has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// memory reads the process's resident memory now and its peak.
func (s *process) memory() (rss, peak int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(fields[1], 10, 64)
		switch fields[0] {
		case "VmRSS:":
			rss = kb << 10
		case "VmHWM:":
			peak = kb << 10
		}
	}
	return rss, peak, nil
}

func mib(n int64) string { return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20)) }
