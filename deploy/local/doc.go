// Package local runs a service or job spec on this machine: every instance
// runs every container of the spec, modelserve containers as local
// modelserve processes and other images with podman; one listener per
// endpoint spreads requests over the ready instances.
package local
