package migrate

import (
	"encoding/binary"
	"strconv"
)

// stringOfPayload returns the value of a DUMP payload that holds a string, when the
// payload is intact (its CRC-64 matches, checked when verify is set). Writing such a value with SET costs the target a
// third of what RESTORE costs (no payload check, no RDB decoding), and makes the same key:
// the server chooses a string's encoding from its bytes either way.
func stringOfPayload(p string, verify bool) (string, bool) {
	// type byte, the string, RDB version (2 bytes), CRC-64 (8 bytes).
	if len(p) < 1+1+10 || p[0] != RDBTypeString {
		return "", false
	}
	body := p[:len(p)-8]
	if verify && crc64Jones(0, body) != binary.LittleEndian.Uint64([]byte(p[len(p)-8:])) {
		return "", false
	}
	v, rest, ok := rdbString(body[1 : len(body)-2])
	if !ok || rest != 0 {
		return "", false
	}
	return v, true
}

// rdbString decodes one RDB-encoded string at the start of b, and says how many bytes of b
// follow it.
func rdbString(b string) (string, int, bool) {
	if len(b) == 0 {
		return "", 0, false
	}
	switch b[0] >> 6 {
	case 0: // 6-bit length
		n := int(b[0] & 0x3f)
		return slice(b, 1, n)
	case 1: // 14-bit length
		if len(b) < 2 {
			return "", 0, false
		}
		n := int(b[0]&0x3f)<<8 | int(b[1])
		return slice(b, 2, n)
	case 2:
		switch b[0] {
		case 0x80: // 32-bit length, big-endian
			if len(b) < 5 {
				return "", 0, false
			}
			return slice(b, 5, int(binary.BigEndian.Uint32([]byte(b[1:5]))))
		case 0x81: // 64-bit length, big-endian
			if len(b) < 9 {
				return "", 0, false
			}
			n := binary.BigEndian.Uint64([]byte(b[1:9]))
			if n > uint64(len(b)) {
				return "", 0, false
			}
			return slice(b, 9, int(n))
		}
		return "", 0, false
	}
	// Special encodings: integers and LZF.
	switch b[0] & 0x3f {
	case 0:
		if len(b) < 2 {
			return "", 0, false
		}
		return strconv.FormatInt(int64(int8(b[1])), 10), len(b) - 2, true
	case 1:
		if len(b) < 3 {
			return "", 0, false
		}
		return strconv.FormatInt(int64(int16(binary.LittleEndian.Uint16([]byte(b[1:3])))), 10), len(b) - 3, true
	case 2:
		if len(b) < 5 {
			return "", 0, false
		}
		return strconv.FormatInt(int64(int32(binary.LittleEndian.Uint32([]byte(b[1:5])))), 10), len(b) - 5, true
	case 3:
		clen, rest, ok := rdbLength(b[1:])
		if !ok {
			return "", 0, false
		}
		ulen, rest, ok := rdbLength(rest)
		if !ok || clen > uint64(len(rest)) {
			return "", 0, false
		}
		out, err := lzfDecompress([]byte(rest[:clen]), ulen)
		if err != nil {
			return "", 0, false
		}
		return string(out), len(rest) - int(clen), true
	}
	return "", 0, false
}

// rdbLength decodes a plain RDB length at the start of b.
func rdbLength(b string) (uint64, string, bool) {
	if len(b) == 0 {
		return 0, "", false
	}
	switch b[0] >> 6 {
	case 0:
		return uint64(b[0] & 0x3f), b[1:], true
	case 1:
		if len(b) < 2 {
			return 0, "", false
		}
		return uint64(b[0]&0x3f)<<8 | uint64(b[1]), b[2:], true
	case 2:
		if b[0] == 0x80 && len(b) >= 5 {
			return uint64(binary.BigEndian.Uint32([]byte(b[1:5]))), b[5:], true
		}
		if b[0] == 0x81 && len(b) >= 9 {
			return binary.BigEndian.Uint64([]byte(b[1:9])), b[9:], true
		}
	}
	return 0, "", false
}

func slice(b string, start, n int) (string, int, bool) {
	if n < 0 || start+n > len(b) {
		return "", 0, false
	}
	return b[start : start+n], len(b) - start - n, true
}
