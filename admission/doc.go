// Package admission is the queue between the server and the workers: it
// admits a batch or rejects it at once when the queue is full, and feeds
// admitted batches to free workers in arrival order.
package admission
