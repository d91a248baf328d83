// Package oip holds the Open Inference Protocol's (KServe v2) gRPC
// service and messages, generated from inference.proto by `make proto`
// (the generated files are committed); the server package answers them.
package oip
