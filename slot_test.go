package migrate

import "testing"

func TestKeySlot(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		key  string
		slot uint16
	}{
		{"123456789", 0x31C3 & 16383}, // the CRC16 check value
		{"foo", 12182},                // CLUSTER KEYSLOT foo
		{"{user1000}.following", 3443},
		{"{user1000}.followers", 3443},
		{"user1000", 3443},
		{"foo{}{bar}", keySlot("foo{}{bar}")}, // empty tag: the whole key
		{"foo{{bar}}zap", keySlot("{bar")},
		{"", 0},
	} {
		if got := keySlot(tc.key); got != tc.slot {
			t.Errorf("keySlot(%q) = %d, want %d", tc.key, got, tc.slot)
		}
	}
	if keySlot("foo{}{bar}") == keySlot("bar") {
		t.Errorf("an empty hash tag must not make the next one count")
	}
}

// TestSlotKeyName: each slot's offset key lands on it, with a tag of at most three
// characters, and is told from other keys, also for a name with a brace of its own.
func TestSlotKeyName(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"migrate:offset", "migrate:offset:10.0.0.1:7000", "my{app}:offset"} {
		for s := range slotCount {
			k := slotKeyName(name, uint16(s))
			if keySlot(k) != uint16(s) || len(slotTags()[s]) > 3 {
				t.Fatalf("slotKeyName(%q, %d) = %q, in slot %d", name, s, k, keySlot(k))
			}
			if base, ok := slotKeyBase(k); !ok || base != name {
				t.Fatalf("slotKeyBase(%q) = %q, %v; want %q", k, base, ok, name)
			}
		}
	}
	for _, k := range []string{"migrate:offset", "migrate:offset{xyzw}", "{user}migrate:offset", "a{0}"} {
		if base, ok := slotKeyBase(k); ok && base == "migrate:offset" {
			t.Errorf("slotKeyBase(%q) = %q, want none", k, base)
		}
	}
}
