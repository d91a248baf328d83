//go:build faultinject

package faults

import "context"

// Enabled reports whether this binary was built to inject faults.
const Enabled = true

type key struct{}

// With carries the fault a request asked for (the Header's value).
func With(ctx context.Context, fault string) context.Context {
	if fault == "" {
		return ctx
	}
	return context.WithValue(ctx, key{}, fault)
}

// Inject panics when the request behind ctx asked for "panic-" + where.
func Inject(ctx context.Context, where string) {
	if f, _ := ctx.Value(key{}).(string); f == "panic-"+where {
		panic("fault injected in the " + where)
	}
}
