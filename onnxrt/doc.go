// Package onnxrt is modelserve's one door to ONNX Runtime: it finds and
// loads the shared library, reads a model's signature from its graph, and
// runs sessions on the typed tensors of package model.
package onnxrt
