package main

import (
	"time"

	"github.com/modelserve/modelserve/internal/loadgen"
)

// target is the /predict route of a server on host.
func target(host string, conns int) *loadgen.Target {
	t, err := loadgen.NewTarget("http://"+host+"/predict", conns)
	if err != nil {
		panic(err) // host comes from a listener this program opened
	}
	return t
}

// closedLoop keeps conns requests in flight against /predict after a
// second of warm-up, counting a window of d.
func closedLoop(host string, body []byte, conns int, d time.Duration, window func(open bool)) *loadgen.Stats {
	return target(host, conns).Closed(body, conns, time.Second, d, window)
}

func percentile(ds []time.Duration, p float64) time.Duration { return loadgen.Percentile(ds, p) }
