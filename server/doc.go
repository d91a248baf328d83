// Package server is modelserve's HTTP front (fiber): it decodes the SQL
// gateway's external-function rows into typed tensors, hands them to
// admission, and encodes the outputs back with the caller's row numbers.
// It also answers readiness probes and Prometheus scrapes.
package server
