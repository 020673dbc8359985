package trafficswitch

import "sync/atomic"

// windowBuckets is how many slices Options.ErrorWindow is cut into.
const windowBuckets = 60

// window counts a target set's requests and 5xx answers over a sliding
// window, in windowBuckets buckets, without a lock. Each counter word
// holds its bucket's epoch (which slice of time it counts) in the high 32
// bits and the count in the low 32; a bucket whose epoch is old is reset
// by the first request of its new epoch.
type window struct {
	req [windowBuckets]atomic.Uint64
	err [windowBuckets]atomic.Uint64
}

// record counts one request at now (Switch.since nanoseconds); width is
// one bucket's span in nanoseconds.
func (w *window) record(now, width int64, failed bool) {
	epoch := uint32(now / width)
	i := epoch % windowBuckets
	bump(&w.req[i], epoch)
	if failed {
		bump(&w.err[i], epoch)
	}
}

func bump(a *atomic.Uint64, epoch uint32) {
	for {
		v := a.Load()
		var next uint64
		switch d := epoch - uint32(v>>32); {
		case d == 0:
			next = v + 1
		case d > 1<<31:
			return // a newer epoch already owns the bucket: too late to count
		default:
			next = uint64(epoch)<<32 | 1
		}
		if a.CompareAndSwap(v, next) {
			return
		}
	}
}

// read sums the buckets of the last windowBuckets epochs up to now.
func (w *window) read(now, width int64) (requests, errors int) {
	cur := uint32(now / width)
	for i := range windowBuckets {
		requests += inWindow(w.req[i].Load(), cur)
		errors += inWindow(w.err[i].Load(), cur)
	}
	return requests, errors
}

func inWindow(v uint64, cur uint32) int {
	if v == 0 || cur-uint32(v>>32) >= windowBuckets {
		return 0
	}
	return int(uint32(v))
}
