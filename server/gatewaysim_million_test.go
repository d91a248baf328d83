//go:build !race

package server

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/modelserve/modelserve/admission"
)

// TestGatewaySimulator_millionRows sends a 1,000,000-row table of the MLP
// through a server whose queue is far smaller than what the gateway
// offers, so that it answers 429s, and checks every row. It is a
// throughput run, left out under the race detector (make test runs it in
// a pass of its own); the simulator's other tests run under it.
func TestGatewaySimulator_millionRows(t *testing.T) {
	f, ready := newFixtureWith(t, "mlp", mlpFunctions, fixtureOptions{
		workers:   2,
		admission: admission.Config{MaxQueuedRows: 2048, MaxBatchRows: 256},
		server:    func(c *Config) { c.MaxBodyBytes = 16 << 20 },
	})
	ready()
	tb := newTable(1_000_000, 64)
	sim := newGatewaySim(serveOver(t, f) + "/predict")
	sim.batchRows = 1000
	sim.concurrency = 16
	start := time.Now()
	got, err := sim.run(context.Background(), tb, "y")
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(start)
	if err := compare(got, expected(t, "mlp", mlpInputs, "y", tb)); err != nil {
		t.Fatal(err)
	}
	if sim.statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("statuses %v: the server never refused, so the retries were not exercised", sim.statuses)
	}
	t.Logf("1,000,000 rows in %v (%.0f rows/s); answers by status: %v", elapsed.Round(time.Millisecond), 1e6/elapsed.Seconds(), sim.statuses)
}
