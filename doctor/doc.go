// Package doctor proves the serving path on this machine's device (what
// `modelserve doctor --run` and `make gpu-check` report): it loads each
// model as serve would, measures it raw and through a real server on
// loopback, checks dynamic batching, and checks that admission answers a
// request too large for the memory and a flood with 413 and 429, never a
// failure. The report is markdown.
package doctor
