// Package tailbuf keeps the end of a stream: the part of a command's output
// where its errors are, within a bound.
package tailbuf

// Buffer is an io.Writer that keeps the last Max bytes written to it.
type Buffer struct {
	Max int
	buf []byte
}

// New returns a Buffer keeping the last max bytes.
func New(max int) *Buffer { return &Buffer{Max: max} }

// Write keeps the end of p and of what came before, within Max; it never
// fails.
func (t *Buffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.Max {
		t.buf = append(t.buf[:0], p[len(p)-t.Max:]...)
		return n, nil
	}
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.Max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return n, nil
}

// String is what the buffer holds.
func (t *Buffer) String() string { return string(t.buf) }
