// Package build composes a model's OCI image without a Docker daemon: a
// base image, a runtime layer (the modelserve binary and ONNX Runtime),
// a model layer (the registry's files for one version), written to a
// registry or an OCI layout; the same inputs give the same digest.
package build
