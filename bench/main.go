// Command bench measures modelserve against ONNX Runtime and against
// itself, in one run, and writes the tables as Markdown:
//
//   - wire: raw in-process rows/s against rows/s through /predict, for a
//     small MLP and a transformer encoder at batch 1 and 64;
//   - json: a 4096-row flat batch: JSON decode only, encode only, raw
//     ONNX Runtime and the whole trip;
//   - batching: 64 concurrent 1-row clients on a DLRM-like model with
//     dynamic batching on and off, against the wire's ceiling (a model
//     that does almost nothing with the same inputs);
//   - overload: for 1-row and 64-row encoder requests, 1-row MLP requests
//     and a mix of sizes, capacity and then three times its request rate
//     offered on schedule; and a low-priority flood with high-priority
//     requests through it;
//   - image: modelserve build on the encoder against a registry on
//     loopback: first push, unchanged rebuild, new model version;
//   - batch: predict-batch over Parquet files of the DLRM's rows against
//     raw ONNX Runtime, and its peak memory for ten times the rows;
//   - auth: 1-row requests with no credential, a bearer token, TLS, and
//     mutual TLS;
//   - switch: a steady load across an alias move (a version switched
//     live) against the same load without one;
//   - observe: tracing and the inference log at 1% and 100% against
//     neither, 1-row and 4096-row requests.
//
// Every server is a real modelserve process; the load comes over HTTP.
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/modelserve/modelserve/internal/loadgen"
)

type options struct {
	binary   string
	out      string
	python   string
	duration time.Duration
	overload time.Duration
	only     string
	soak     time.Duration
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/modelserve", "modelserve binary to benchmark")
	flag.StringVar(&o.out, "out", "out/bench.md", "where to write the tables")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "python with python3-onnx")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "measuring window of each closed-loop cell")
	flag.DurationVar(&o.overload, "overload", 30*time.Second, "how long the overload is offered")
	flag.StringVar(&o.only, "only", "wire,json,batching,overload,image,batch,auth,switch,oip,observe", "sections to run (soak runs only when named)")
	flag.DurationVar(&o.soak, "soak", 10*time.Minute, "how long the soak section runs")
	var probe probeFlags
	flag.StringVar(&probe.url, "probe-url", "", "run as a probe process (probe.go) against this URL")
	flag.StringVar(&probe.body, "probe-body", "", "the file a probe sends")
	flag.DurationVar(&probe.d, "probe-for", 0, "how long a probe runs")
	flag.Parse()
	if probe.url != "" {
		if err := runProbe(probe); err != nil {
			fmt.Fprintln(os.Stderr, "bench probe:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type section struct {
	name string
	run  func(*env) (string, error)
}

func run(o options) error {
	e, err := setup(o)
	if err != nil {
		return err
	}
	defer e.close()
	sections := []section{
		{"wire", wireSection},
		{"json", jsonSection},
		{"batching", batchingSection},
		{"overload", overloadSection},
		{"image", imageSection},
		{"batch", batchSection},
		{"auth", authSection},
		{"switch", switchSection},
		{"oip", oipSection},
		{"observe", observeSection},
		{"soak", soakSection},
	}
	want := strings.Split(o.only, ",")
	host, _ := os.Hostname()
	var b strings.Builder
	fmt.Fprintf(&b, "# modelserve bench\n\n%s, %d cores (GOMAXPROCS), ONNX Runtime %s, CPU, all measured in one run on %s.\n",
		host, runtime.GOMAXPROCS(0), e.ortVersion, time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(&b, "Servers are modelserve processes with their default settings unless a row says otherwise; the load generator (this program, over HTTP with keep-alive) shares the same cores.\n")
	for _, s := range sections {
		if !slices.Contains(want, s.name) {
			continue
		}
		fmt.Fprintf(os.Stderr, "bench: %s\n", s.name)
		text, err := s.run(e)
		b.WriteString("\n" + text)
		if err != nil {
			// What was measured is kept, failure and all.
			fmt.Print(b.String())
			os.WriteFile(o.out, []byte(b.String()), 0o644)
			return fmt.Errorf("%s: %w", s.name, err)
		}
	}
	fmt.Print(b.String())
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(o.out, []byte(b.String()), 0o644)
}

// short keeps three significant digits or so: 470µs, 2.35ms, 1.01s.
func short(d time.Duration) time.Duration { return loadgen.Round(d) }

// verdict marks a measured ratio against its target.
func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "**missed**"
}
