package workers

import "syscall"

// computeNice is the niceness of worker threads: compute yields to the
// server's threads, so reading requests and refusing overload never wait
// behind a batch for a core.
const computeNice = 10

// lowerPriority lowers the calling OS thread's priority; threads it starts
// afterwards (ONNX Runtime's intra-op pool) inherit it.
func lowerPriority() error {
	return syscall.Setpriority(syscall.PRIO_PROCESS, syscall.Gettid(), computeNice)
}
