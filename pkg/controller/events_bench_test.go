package controller

import (
	"testing"
	"time"
)

// BenchmarkEvents appends to a running deployment's stream while a
// follower reads what is new after each append, as an event stream client
// does; sub-benchmarks read from the start too, as a client joining late.
func BenchmarkEvents(b *testing.B) {
	at := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	line := Event{Time: at, Type: EventLog, Step: StepHealth, Message: "probe 172.18.0.12:8000/health: 200 in 3ms"}

	b.Run("append", func(b *testing.B) {
		b.ReportAllocs()
		l := newEventLog()
		for b.Loop() {
			if len(l.events) >= maxEventsPerLog {
				b.StopTimer()
				l = newEventLog()
				b.StartTimer()
			}
			l.append(line, false)
		}
	})
	b.Run("append+follow", func(b *testing.B) {
		b.ReportAllocs()
		l := newEventLog()
		seq := 0
		for b.Loop() {
			if len(l.events) >= maxEventsPerLog {
				b.StopTimer()
				l, seq = newEventLog(), 0
				b.StartTimer()
			}
			l.append(line, false)
			evs, _, _ := l.since(seq)
			if len(evs) != 1 {
				b.Fatalf("since(%d) = %d events, want 1", seq, len(evs))
			}
			seq = evs[0].Seq
		}
	})
	// A client that joins a deploy 200 events in (pull progress, pre-deploy
	// output, probes) gets all of them at once.
	b.Run("read-200-from-start", func(b *testing.B) {
		l := newEventLog()
		for range 200 {
			l.append(line, false)
		}
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			if evs, _, _ := l.since(0); len(evs) != 200 {
				b.Fatalf("since(0) = %d events, want 200", len(evs))
			}
		}
	})
}
