package migrate

import "fmt"

// Values in pieces. RDBReader reads each value whole, to hand it over as a DUMP payload.
// A value larger than a bound (the key budget, or what the target takes in one command)
// is not held whole when the reader has an rdbPieces: once the bytes read of the value
// pass the bound, the reader hands them over in pieces cut at element boundaries, each a
// small value of the same RDB encoding (its count, then its elements' bytes as the file
// holds them), and drops them from its buffer, so that memory stays within about one
// window whatever the value's size. A string goes as windows of its content, an LZF
// string decompressed as it streams in. A stream goes as its nodes, then its metadata,
// each consumer group, its pending entries, consumers and their pending entries, its
// NACKed entries (Redis 8.8) and its idempotent-producer state (Redis 8.6), each a piece
// of its own kind, in file order. The value's single blobs (a ziplist, listpack or intset,
// bounded by the server's *-max-listpack-* settings) and each element are still read
// whole. A stream is found large only by its nodes: one whose groups alone pass the bound
// is read whole.

// rdbPieces receives the values too large to be held whole (snapshot_bigkeys.go).
type rdbPieces struct {
	over   int // value bytes past which a value goes in pieces
	window int // bytes of one piece, about
	// begin is told that the value of e (Kind, DB, Key, Type and expiry set, no Payload)
	// goes in pieces; size is a string's length, else -1. keep false drops the value,
	// read to its end without being handed over.
	begin func(e *RDBEntry, size int64) (keep bool, err error)
	// piece receives one piece of the value: for a value type, a value of that type (or,
	// for a string, content bytes); else one of the stream pieces (pieceStream*). data
	// is the reader's: it is valid until piece returns.
	piece func(kind byte, data []byte) error
	// end is told that the value was handed over whole.
	end func() error
}

// The pieces of a stream, in file order (readStream): the kinds beside the value types.
const (
	pieceStreamNodes = 0x80 + iota // a node count, then each node's master ID and listpack
	pieceStreamMeta                // length and last ID; from type 19 first ID, max deleted ID, entries added
	pieceGroup                     // a group's name and last delivered ID; from type 19 its entries read
	piecePEL                       // a count, then group PEL entries: ID, delivery time, delivery count
	pieceConsumer                  // a consumer's name and seen time; from type 21 its active time
	pieceConsumerPEL               // a count, then IDs the consumer owns
	pieceNacked                    // a count, then IDs of the group's NACKed entries (type 27)
	pieceGroupEnd                  // the group is whole (empty)
	pieceStreamIDMP                // the idempotent-producer state (type 26)
)

// What the reader does with the value being read once it is found large.
const (
	bigNone    = iota // not large (yet): read whole
	bigKept           // handed over in pieces
	bigDropped        // read to its end and dropped
)

// beginBig hands the value being read over to r.pieces, from now on.
func (r *RDBReader) beginBig(size int64) error {
	keep, err := r.pieces.begin(r.cur, size)
	if err != nil {
		return err
	}
	r.big = bigDropped
	if keep {
		r.big = bigKept
	}
	return nil
}

// dropFrom drops r.buf[at:], first adding it to the checksum.
func (r *RDBReader) dropFrom(at int) {
	r.crc = crc64Jones(r.crc, r.buf[r.crcPos:])
	r.buf, r.crcPos = r.buf[:at], at
}

// part hands r.buf[from:] over as a piece of kind, when the value goes in pieces.
func (r *RDBReader) part(kind byte, from int) error {
	if r.big == bigKept {
		if err := r.pieces.piece(kind, r.buf[from:]); err != nil {
			return err
		}
	}
	if r.big != bigNone {
		r.dropFrom(from)
	}
	return nil
}

// whole hands a value of one blob over, whole, when it is large.
func (r *RDBReader) whole(t byte) error {
	if r.pieces == nil || r.big != bigNone || len(r.buf)-r.valueStart <= r.pieces.over {
		return nil
	}
	if err := r.beginBig(-1); err != nil {
		return err
	}
	return r.part(t, r.valueStart)
}

// itemWindow collects the items of a counted part of a value (elements, nodes, PEL
// entries) and hands them over as pieces of kind: prefix, their count, their bytes.
type itemWindow struct {
	r      *RDBReader
	kind   byte
	prefix []byte // what a piece starts with before its count (a hash's minimum expiry)
	from   int    // where the items not handed over yet start in r.buf
	k      uint64 // how many they are
	begins bool   // the value may be found large here
}

// items starts the window of a counted part whose items start at the end of r.buf.
func (r *RDBReader) items(kind byte, prefix []byte, begins bool) *itemWindow {
	return &itemWindow{r: r, kind: kind, prefix: prefix, from: len(r.buf), begins: begins}
}

// add counts one more item read, and hands the window over when it is full.
func (w *itemWindow) add() error {
	if w.r.pieces == nil {
		return nil
	}
	w.k++
	return w.flush(false)
}

// end hands over what is left once the part is read.
func (w *itemWindow) end() error {
	if w.r.pieces == nil || w.r.big == bigNone {
		return nil
	}
	return w.flush(true)
}

func (w *itemWindow) flush(last bool) error {
	r, p := w.r, w.r.pieces
	if r.big == bigNone {
		if !w.begins || len(r.buf)-r.valueStart <= p.over {
			return nil
		}
		if err := r.beginBig(-1); err != nil {
			return err
		}
	}
	if !last && len(r.buf)-w.from < p.window {
		return nil
	}
	if r.big == bigKept && w.k > 0 {
		r.scratch = appendRDBLength(append(r.scratch[:0], w.prefix...), w.k)
		r.scratch = append(r.scratch, r.buf[w.from:]...)
		if err := p.piece(w.kind, r.scratch); err != nil {
			return err
		}
		if cap(r.scratch) > 4*p.window {
			r.scratch = nil
		}
	}
	r.dropFrom(w.from)
	w.k = 0
	return nil
}

// readStringPieces reads a string value, handing a long one over as windows of its
// content: plain, or decompressed from LZF as it streams in.
func (r *RDBReader) readStringPieces() error {
	off := r.off
	n, special, err := r.readLen("string")
	if err != nil {
		return err
	}
	p := r.pieces
	switch {
	case !special:
		if n <= uint64(p.over) {
			_, err = r.take(n, "string")
			return err
		}
		if err := r.beginBig(int64(min(n, 1<<62))); err != nil {
			return err
		}
		for n > 0 {
			c := min(n, uint64(p.window))
			if err := r.takePiece(c, "string", func(b []byte) error { return p.piece(RDBTypeString, b) }); err != nil {
				return err
			}
			n -= c
		}
		return nil
	case n == rdbEncInt8, n == rdbEncInt16, n == rdbEncInt32:
		_, err = r.take(1<<n, "string")
		return err
	case n != rdbEncLZF:
		return r.corruptf(off, "string: unknown string encoding %d", n)
	}
	clen, err := r.readCount("string compressed length")
	if err != nil {
		return err
	}
	ulen, err := r.readCount("string length")
	if err != nil {
		return err
	}
	if ulen <= uint64(p.over) || clen > ulen {
		_, err = r.take(clen, "string")
		return err
	}
	if err := r.beginBig(int64(min(ulen, 1<<62))); err != nil {
		return err
	}
	z := lzfStream{left: ulen, window: p.window, emit: func(b []byte) error {
		if r.big != bigKept {
			return nil
		}
		return p.piece(RDBTypeString, b)
	}}
	for clen > 0 {
		c := min(clen, readChunk)
		if err := r.takePiece(c, "string", z.feed); err != nil {
			return r.corruptf(off, "string: %v", err)
		}
		clen -= c
	}
	if err := z.flush(); err != nil {
		return r.corruptf(off, "string: %v", err)
	}
	return nil
}

// takePiece reads n bytes and gives them to use, then drops them.
func (r *RDBReader) takePiece(n uint64, what string, use func([]byte) error) error {
	i, err := r.take(n, what)
	if err != nil {
		return err
	}
	if r.big == bigKept {
		err = use(r.buf[i:])
	}
	r.dropFrom(i)
	return err
}

// lzfHistory is how far back an LZF back reference reaches (liblzf: 13 bits of offset).
const lzfHistory = 8192

// lzfStream decompresses LZF data as it arrives in chunks, keeping only the history back
// references reach and the output not yet handed over: lzfDecompress without holding
// the whole output.
type lzfStream struct {
	left   uint64 // output bytes still expected
	window int    // output bytes handed over at once, about
	emit   func([]byte) error
	out    []byte // history, then output not handed over yet
	kept   int    // how much of out is history, handed over already
	state  int    // 0: a control byte is next; 1: literal bytes; 2: a length byte; 3: an offset byte
	n      int    // literal bytes left, or a back reference's length
	ctrl   int
}

func (z *lzfStream) feed(in []byte) error {
	for _, b := range in {
		switch z.state {
		case 0:
			z.ctrl = int(b)
			if z.ctrl < 32 {
				z.n, z.state = z.ctrl+1, 1
				continue
			}
			z.n = z.ctrl >> 5
			z.state = 3
			if z.n == 7 {
				z.state = 2
			}
		case 1:
			if z.left == 0 {
				return errBadLZF
			}
			z.out = append(z.out, b)
			z.left--
			if z.n--; z.n == 0 {
				z.state = 0
			}
		case 2:
			z.n += int(b)
			z.state = 3
		case 3:
			back := (z.ctrl&0x1f)<<8 + int(b) + 1
			n := z.n + 2
			if back > len(z.out) || uint64(n) > z.left {
				return errBadLZF
			}
			ref := len(z.out) - back
			for k := range n { // byte by byte: the source may overlap what is written
				z.out = append(z.out, z.out[ref+k])
			}
			z.left -= uint64(n)
			z.state = 0
		}
		if len(z.out)-z.kept >= z.window {
			if err := z.handOver(); err != nil {
				return err
			}
		}
	}
	return nil
}

// handOver emits the output not handed over yet, and keeps the history.
func (z *lzfStream) handOver() error {
	if err := z.emit(z.out[z.kept:]); err != nil {
		return err
	}
	if len(z.out) > lzfHistory {
		z.out = z.out[:copy(z.out, z.out[len(z.out)-lzfHistory:])]
	}
	z.kept = len(z.out)
	return nil
}

// flush emits the rest, once the input is done, which must have been whole.
func (z *lzfStream) flush() error {
	if z.left != 0 || z.state != 0 {
		return fmt.Errorf("LZF data ends %d bytes short of its length", z.left)
	}
	if len(z.out) > z.kept {
		return z.handOver()
	}
	return nil
}
