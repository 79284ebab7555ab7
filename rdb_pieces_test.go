package migrate

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redismigrate/migrate/internal/redistest"
)

// valueParts decodes a value of RDB type t (its bytes, no footer) into its elements, in a
// form that two ways of holding the same value share: a string's content, a list's
// elements in order, a set's members, a sorted set's members with scores and a hash's
// fields with values and expiries, each sorted. ok is false for other types.
func valueParts(t byte, v string, valkey bool) (parts []string, ordered, ok bool) {
	switch t {
	case RDBTypeString:
		s, rest, ok := nextString(v)
		return []string{s}, true, ok && rest == ""
	case RDBTypeList, RDBTypeListZiplist, RDBTypeListQuicklist, RDBTypeListQuicklist2:
		parts, ok = listElements(t, v)
		return parts, true, ok
	case RDBTypeSet, RDBTypeSetIntset, RDBTypeSetListpack:
		parts, ok = setMembers(t, v)
		return parts, false, ok
	case RDBTypeZSet, RDBTypeZSet2, RDBTypeZSetZiplist, RDBTypeZSetListpack:
		entries, ok := zsetEntries(t, v)
		for _, e := range entries {
			parts = append(parts, fmt.Sprintf("%s=%v", e.member, e.score))
		}
		return parts, false, ok
	case RDBTypeHash, RDBTypeHashZipmap, RDBTypeHashZiplist, RDBTypeHashListpack, RDBTypeHashMetadataPreGA,
		RDBTypeHashListpackExPreGA, RDBTypeHashMetadata, RDBTypeHashListpackEx:
		fields, ok := hashFields(t, v, valkey)
		for _, f := range fields {
			parts = append(parts, fmt.Sprintf("%q=%q@%d", f.field, f.value, f.expireAt))
		}
		return parts, false, ok
	}
	return nil, false, false
}

// TestRDBReaderPieces reads RDB files with every encoding (a Redis 7.0 dump, the fixtures
// of older versions, the hand-built file of newer encodings) twice: whole, and with every
// value handed over in pieces of a few bytes. The pieces of each value hold exactly its
// elements, a stream's pieces come in file order, and the checksum still holds.
func TestRDBReaderPieces(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, redistest.Config{})
	populate(t, srv, true)
	do(t, srv.Client(t, 0), "SAVE")
	dump, err := os.ReadFile(filepath.Join(srv.Dir, "dump.rdb"))
	if err != nil {
		t.Fatal(err)
	}
	synthetic, _ := syntheticRDB()
	files := map[string][]byte{"7.0 dump": dump, "synthetic": synthetic}
	if dir := filepath.Join("..", "shared", "testdata", "rdb"); dirExists(dir) {
		for _, name := range []string{"encodings.rdb", "hash-zipmap.rdb", "hash-ziplist.rdb", "zset-ziplist.rdb", "list-quicklist.rdb"} {
			if data, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
				files[name] = data
			}
		}
	}
	for name, data := range files {
		whole, rd := readAll(t, bytes.NewReader(data))
		want, ordered := map[string][]string{}, map[string]bool{}
		for _, e := range whole {
			if e.Kind != RDBKey {
				continue
			}
			if parts, inOrder, ok := valueParts(e.Type, string(e.Payload[1:len(e.Payload)-10]), rd.valkey); ok {
				want[e.Key], ordered[e.Key] = parts, inOrder
			}
		}
		for _, window := range []int{1, 100, 5000} {
			r := NewRDBReader(bytes.NewReader(data))
			got := map[string][]string{}
			var str strings.Builder
			var cur *RDBEntry
			var kinds []byte
			r.pieces = &rdbPieces{over: 0, window: window,
				begin: func(e *RDBEntry, size int64) (bool, error) {
					cur, kinds = e, nil
					str.Reset()
					return true, nil
				},
				piece: func(kind byte, b []byte) error {
					kinds = append(kinds, kind)
					switch {
					case kind == RDBTypeString:
						str.Write(b)
					case kind < pieceStreamNodes:
						parts, _, ok := valueParts(kind, string(b), r.valkey)
						if !ok && want[cur.Key] != nil {
							return fmt.Errorf("piece of type %d of %q does not decode: %q", kind, cur.Key, b)
						}
						got[cur.Key] = append(got[cur.Key], parts...)
					}
					return nil
				},
				end: func() error {
					if cur.Type == RDBTypeString {
						got[cur.Key] = []string{str.String()}
					}
					i := slices.IndexFunc(kinds, func(k byte) bool { return k != pieceStreamNodes })
					if cur.TypeName() == "stream" && (i < 1 || kinds[i] != pieceStreamMeta) {
						return fmt.Errorf("stream %q: pieces %v", cur.Key, kinds)
					}
					return nil
				},
			}
			for {
				e, err := r.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("%s, window %d: %v", name, window, err)
				}
				if e.Kind == RDBKey { // not handed over: a short string, or an empty one
					got[e.Key], _, _ = valueParts(e.Type, string(e.Payload[1:len(e.Payload)-10]), r.valkey)
				}
			}
			for key, parts := range want {
				g := got[key]
				if !ordered[key] {
					slices.Sort(g)
					slices.Sort(parts)
				}
				if !slices.Equal(g, parts) {
					t.Errorf("%s, window %d: key %q in pieces: %d parts, whole: %d", name, window, key, len(g), len(parts))
				}
			}
		}
	}
}

func dirExists(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.IsDir()
}
