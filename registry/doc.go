// Package registry stores ONNX models by name and version in a directory:
// one folder per version holding the model file and a manifest with its
// signature, functions and checksum. Versions appear atomically, are checked
// against their checksum when loaded, and cannot be deleted while served.
package registry
