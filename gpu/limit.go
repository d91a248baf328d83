package gpu

import "fmt"

// MemoryLimit is admission's view of the GPUs' memory: how many bytes of
// requests (the queue's own measure: inputs and outputs) may be in flight
// so that their rows fit in device memory. Each GPU with workers gives the
// memory it had free once the model was loaded and warmed up, less a
// safety margin; a GPU that stops answering gives nothing until it is
// back. Bytes reads the monitor's latest samples and never waits on NVML.
type MemoryLimit struct {
	m        *Monitor
	ordinals []int
	capacity []uint64 // device bytes per GPU, at load, less the margin
	// deviceRow and hostRow are one row's bytes on the device and in the
	// queue's accounting.
	deviceRow, hostRow int64
}

// NewMemoryLimit takes each GPU's free memory now (call it after the
// workers loaded and warmed up) less margin (a share of its total) as
// what in-flight rows may use, at deviceBytesPerRow each.
func NewMemoryLimit(m *Monitor, ordinals []int, margin float64, deviceBytesPerRow, hostBytesPerRow int64) (*MemoryLimit, error) {
	if margin < 0 || margin >= 1 {
		return nil, fmt.Errorf("GPU memory margin %v: give a share between 0 and 1", margin)
	}
	if deviceBytesPerRow <= 0 || hostBytesPerRow <= 0 {
		return nil, fmt.Errorf("bytes per row must be positive (device %d, host %d)", deviceBytesPerRow, hostBytesPerRow)
	}
	l := &MemoryLimit{m: m, ordinals: ordinals, deviceRow: deviceBytesPerRow, hostRow: hostBytesPerRow}
	m.Sample()
	for _, k := range ordinals {
		s, ok := m.Latest(k)
		if !ok {
			return nil, fmt.Errorf("GPU %d does not answer", k)
		}
		reserve := uint64(margin * float64(s.MemoryTotal))
		var c uint64
		if s.MemoryFree > reserve {
			c = s.MemoryFree - reserve
		}
		l.capacity = append(l.capacity, c)
	}
	return l, nil
}

// Rows is how many rows may be in flight on the GPUs that answer now.
func (l *MemoryLimit) Rows() int64 {
	var rows int64
	for i, k := range l.ordinals {
		if _, up := l.m.Latest(k); up {
			rows += int64(l.capacity[i]) / l.deviceRow
		}
	}
	return rows
}

// Bytes is the admission budget the GPUs allow (admission.Limit); 0 when
// no GPU can take a row now.
func (l *MemoryLimit) Bytes() int64 { return l.Rows() * l.hostRow }
