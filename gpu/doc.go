// Package gpu finds the GPUs this process may use and watches them: NVML
// behind a small Backend interface (a fake in tests), the visible devices
// as CUDA numbers them, samples on their own ticker for metrics, and the
// device memory admission may fill.
package gpu
