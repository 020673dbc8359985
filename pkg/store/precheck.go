package store

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"os"
)

// bbolt's on-disk meta page: a 16-byte page header, then magic, version,
// page size, flags (4 bytes each), the root bucket (16), the freelist page
// id (8), the high-water page id (8), the transaction id (8) and an FNV-64a
// checksum of everything before it.
const (
	pageHeaderSize = 16
	metaMagic      = 0xED0CDAED
	metaSumLen     = 56 // bytes of the meta the checksum covers
	metaLen        = metaSumLen + 8
)

type diskMeta struct {
	pageSize uint32
	highPage uint64
	txid     uint64
}

// readMeta reads the meta page at off; ok is false when it is not a valid
// meta (wrong magic or checksum, or cut off).
func readMeta(f *os.File, off int64) (m diskMeta, ok bool) {
	buf := make([]byte, pageHeaderSize+metaLen)
	if _, err := f.ReadAt(buf, off); err != nil {
		return diskMeta{}, false
	}
	b := buf[pageHeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != metaMagic {
		return diskMeta{}, false
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:metaSumLen])
	if h.Sum64() != le.Uint64(b[metaSumLen:]) {
		return diskMeta{}, false
	}
	return diskMeta{pageSize: le.Uint32(b[8:]), highPage: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}, true
}

// checkNotTruncated fails when the file is shorter than the pages its newest
// valid meta page says are in use. bbolt must never open such a file: it
// panics reading beyond the end, after it has locked the file, and the lock
// would stay held by this process, so that `deployd recover` could not
// move the file aside. Files whose meta pages are both invalid are left to
// bbolt, which reports them without panicking.
func checkNotTruncated(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("check size: %w", err)
	}
	defer func() { _ = f.Close() }() // read only
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("check size: %w", err)
	}
	best, found := readMeta(f, 0)
	second := int64(os.Getpagesize())
	if found && best.pageSize > 0 {
		second = int64(best.pageSize)
	}
	if m, ok := readMeta(f, second); ok && (!found || m.txid > best.txid) {
		best, found = m, true
	}
	if !found || best.pageSize == 0 {
		return nil
	}
	if want := best.highPage * uint64(best.pageSize); uint64(fi.Size()) < want {
		return fmt.Errorf("file is %d bytes, its meta page says %d: truncated", fi.Size(), want)
	}
	return nil
}
