package migrate

import "sync"

// slotCount is the number of hash slots of a Redis Cluster.
const slotCount = 16384

// keySlot returns the cluster hash slot of key: CRC16 (XMODEM) of the key, or of its hash
// tag (the part between the first '{' and the next '}', when not empty), modulo 16384.
func keySlot(key string) uint16 {
	if s := indexByte(key, '{'); s >= 0 {
		if e := indexByte(key[s+1:], '}'); e > 0 {
			key = key[s+1 : s+1+e]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^key[i]]
	}
	return crc & (slotCount - 1)
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// crc16Table is CRC16-CCITT (XMODEM, polynomial 0x1021), as Redis Cluster uses.
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

// slotTags holds, for each slot, the shortest hash tag (letters and digits) whose key lands
// on it: a following Snapshot names its offset keys on a cluster target with them.
var slotTags = sync.OnceValue(func() *[slotCount]string {
	const chars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	var t [slotCount]string
	left := slotCount
	for n := 1; left > 0; n++ {
		idx := make([]int, n)
		buf := make([]byte, n)
		for {
			for i, x := range idx {
				buf[i] = chars[x]
			}
			if s := keySlot(string(buf)); t[s] == "" {
				t[s] = string(buf)
				left--
			}
			i := n - 1
			for i >= 0 && idx[i] == len(chars)-1 {
				idx[i] = 0
				i--
			}
			if i < 0 {
				break
			}
			idx[i]++
		}
	}
	return &t
})

// slotKeyName returns the name of the key named name that lands on slot: name with the
// slot's hash tag after it, or before it when name has a brace of its own.
func slotKeyName(name string, slot uint16) string {
	tag := "{" + slotTags()[slot] + "}"
	if indexByte(name, '{') >= 0 {
		return tag + name
	}
	return name + tag
}

// slotKeyBase returns the name a key of slotKeyName was made of, and whether it is one.
func slotKeyBase(key string) (string, bool) {
	tag := "{" + slotTags()[keySlot(key)] + "}"
	switch {
	case len(key) > len(tag) && key[len(key)-len(tag):] == tag && indexByte(key[:len(key)-len(tag)], '{') < 0:
		return key[:len(key)-len(tag)], true
	case len(key) > len(tag) && key[:len(tag)] == tag:
		return key[len(tag):], true
	}
	return "", false
}
