// Package faults lets the tests of a real server process make its code
// panic on purpose, to prove that the process survives. A build without
// the faultinject tag compiles every call here to nothing: production
// binaries cannot be made to fail this way.
package faults

// Header names the fault a request asks for, e.g. "panic-worker"; only
// a binary built with -tags faultinject reads it.
const Header = "X-Modelserve-Fault"
