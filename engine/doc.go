// Package engine turns a registry version into a served model: it checks
// the model file, starts the workers (ONNX Runtime sessions on the CPU or
// the GPUs, warmed up), puts the admission queue in front of them, and
// drains and unloads them. Every front — the HTTP server, predict-batch,
// doctor --run — runs rows through a loaded Version; none of them
// assembles workers or admission itself.
//
// The data path, in the order a request takes it: a front reads a
// request and asks its Version to Admit it (admission/, before the body
// is parsed), decodes the rows, and queues them on the Ticket; the queue
// coalesces and splits rows into batches (admission/dispatch.go) that the
// workers run (workers/), and the outputs come back to the front, which
// writes the answer.
package engine
