package migrate

// Redis checksums RDB files and DUMP payloads with CRC-64/Jones: reflected,
// polynomial 0xad93d23594c935a9, initial value 0 and no final xor. Go's
// hash/crc64 inverts the register before and after, so it computes a
// different function and cannot be used.

// crc64JonesReflected is 0xad93d23594c935a9 with its bits reversed, as the
// reflected (LSB-first) algorithm needs.
const crc64JonesReflected = 0x95ac9329ac4bc9b5

// crc64Tables are the slicing-by-8 tables: crc64Tables[0] is the classic
// byte-at-a-time table and crc64Tables[k] advances a byte through k more zero bytes.
var crc64Tables = makeCRC64Tables()

func makeCRC64Tables() *[8][256]uint64 {
	t := new([8][256]uint64)
	for i := range 256 {
		c := uint64(i)
		for range 8 {
			if c&1 == 1 {
				c = c>>1 ^ crc64JonesReflected
			} else {
				c >>= 1
			}
		}
		t[0][i] = c
	}
	for i := range 256 {
		c := t[0][i]
		for k := 1; k < 8; k++ {
			c = t[0][byte(c)] ^ c>>8
			t[k][i] = c
		}
	}
	return t
}

// crc64Jones continues the Redis CRC-64 crc over p; start with crc = 0.
func crc64Jones[T string | []byte](crc uint64, p T) uint64 {
	t := crc64Tables
	for len(p) >= 8 {
		crc ^= uint64(p[0]) | uint64(p[1])<<8 | uint64(p[2])<<16 | uint64(p[3])<<24 |
			uint64(p[4])<<32 | uint64(p[5])<<40 | uint64(p[6])<<48 | uint64(p[7])<<56
		crc = t[7][byte(crc)] ^ t[6][byte(crc>>8)] ^ t[5][byte(crc>>16)] ^
			t[4][byte(crc>>24)] ^ t[3][byte(crc>>32)] ^ t[2][byte(crc>>40)] ^
			t[1][byte(crc>>48)] ^ t[0][byte(crc>>56)]
		p = p[8:]
	}
	for i := 0; i < len(p); i++ {
		crc = t[0][byte(crc)^p[i]] ^ crc>>8
	}
	return crc
}

// crc64JonesByte continues crc over the single byte b.
func crc64JonesByte(crc uint64, b byte) uint64 {
	return crc64Tables[0][byte(crc)^b] ^ crc>>8
}
