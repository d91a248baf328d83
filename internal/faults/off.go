//go:build !faultinject

package faults

import "context"

// Enabled reports whether this binary was built to inject faults.
const Enabled = false

// With returns ctx: faults are compiled out.
func With(ctx context.Context, _ string) context.Context { return ctx }

// Inject does nothing: faults are compiled out.
func Inject(context.Context, string) {}
