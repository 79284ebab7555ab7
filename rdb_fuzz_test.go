package migrate

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzRDBReader feeds arbitrary bytes to the reader: it must end every input
// with io.EOF or an error wrapping ErrCorruptRDB or ErrUnsupported, and its memory must stay in proportion
// to the bytes that arrived, whatever lengths the input declares.
func FuzzRDBReader(f *testing.F) {
	if files, _ := filepath.Glob(filepath.Join("..", "shared", "testdata", "rdb", "*")); len(files) > 0 {
		for _, name := range files {
			if data, err := os.ReadFile(name); err == nil && filepath.Ext(name) != ".md" {
				f.Add(data)
			}
		}
	}
	synthetic, _ := syntheticRDB()
	f.Add(synthetic)
	for _, seed := range formatSeeds() {
		f.Add(seed)
	}
	f.Add(smallDump(f))
	f.Fuzz(func(t *testing.T, data []byte) {
		// The same input in pieces (rdbpieces.go) must end the same way, never panic.
		p := NewRDBReader(bytes.NewReader(data))
		p.pieces = &rdbPieces{over: 16, window: 16,
			begin: func(*RDBEntry, int64) (bool, error) { return true, nil },
			piece: func(byte, []byte) error { return nil },
			end:   func() error { return nil },
		}
		for {
			if _, err := p.Next(); err != nil {
				if err != io.EOF && !errors.Is(err, ErrCorruptRDB) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("in pieces: error wraps neither ErrCorruptRDB nor ErrUnsupported: %v", err)
				}
				break
			}
		}
		r := NewRDBReader(bytes.NewReader(data))
		for {
			e, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrCorruptRDB) && !errors.Is(err, ErrUnsupported) {
					t.Fatalf("error wraps neither ErrCorruptRDB nor ErrUnsupported: %v", err)
				}
				return
			}
			// A payload holds input bytes plus the 11 bytes of type and trailer.
			if len(e.Payload) > len(data)+11 {
				t.Fatalf("payload of %d bytes from %d bytes of input", len(e.Payload), len(data))
			}
			if c := cap(r.buf); c > 2*len(data)+2*readChunk {
				t.Fatalf("record buffer of %d bytes from %d bytes of input", c, len(data))
			}
			if len(e.Key) > len(data)*lzfMaxRatio {
				t.Fatalf("key of %d bytes from %d bytes of input", len(e.Key), len(data))
			}
		}
	})
}
