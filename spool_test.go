//go:build linux

package migrate

import (
	"bytes"
	"context"
	"io"
	"syscall"
	"testing"
)

// TestSpoolFreesApplied: the spool gives back the disk space of what is applied, and a
// reader still reads what follows.
func TestSpoolFreesApplied(t *testing.T) {
	sp, err := newSpool(t.TempDir(), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer sp.remove()
	chunk := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	for range 320 {                                         // 20 MiB
		if _, err := sp.append(chunk); err != nil {
			t.Fatal(err)
		}
	}
	blocks := func() int64 {
		var st syscall.Stat_t
		if err := syscall.Fstat(int(sp.f.Fd()), &st); err != nil {
			t.Fatal(err)
		}
		return st.Blocks * 512
	}
	before := blocks()
	sp.free(16 << 20)
	after := blocks()
	t.Logf("disk use %d bytes before, %d after freeing 16 MiB", before, after)
	if before < 20<<20 || after > before-15<<20 {
		t.Errorf("disk use %d bytes before, %d after freeing 16 MiB", before, after)
	}
	r := sp.streamReader(context.Background())
	r.pos = 16 << 20
	buf := make([]byte, 16)
	if _, err := io.ReadFull(r, buf); err != nil || !bytes.Equal(buf, chunk[:16]) {
		t.Errorf("read after the freed part: %q, %v", buf, err)
	}
}
