//go:build !linux

package workers

// lowerPriority is a no-op where threads have no niceness of their own.
func lowerPriority() error { return nil }
