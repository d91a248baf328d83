// Package workers runs batches on a pool of workers, each with its own ONNX
// Runtime session — its own copy of the model — on the CPU or on a GPU
// through the CUDA execution provider.
package workers
