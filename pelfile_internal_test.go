package migrate

import (
	"encoding/binary"
	"testing"
)

// TestPELFile finds the pending entries of a group, kept in a temporary file, in the
// orders a consumer's entries come: in order, with gaps, and back to the start.
func TestPELFile(t *testing.T) {
	t.Parallel()
	p, err := newPELFile(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	id := func(i int) string { return string(streamID16(uint64(i)*2, 1)) }
	const n = 10000
	for i := range n {
		rec := append([]byte(id(i)), binary.LittleEndian.AppendUint64(nil, uint64(1000+i))...)
		if err := p.add(string(rec), uint64(i%7)); err != nil {
			t.Fatal(err)
		}
	}
	for _, order := range [][]int{{0, 1, 2, 3, 500, 501, 9999}, {7, 5000, 5001, 2, 9998}, {4096, 4095, 8192}} {
		for _, i := range order {
			at, count, ok, err := p.find(id(i))
			if err != nil || !ok || at != int64(1000+i) || count != uint64(i%7) {
				t.Fatalf("find %d: %d %d %v %v", i, at, count, ok, err)
			}
		}
	}
	if _, _, ok, err := p.find(string(streamID16(3, 1))); ok || err != nil {
		t.Errorf("find of an ID not there: %v %v", ok, err)
	}
	p.reset()
	if _, _, ok, _ := p.find(id(1)); ok {
		t.Errorf("found after reset")
	}
}
