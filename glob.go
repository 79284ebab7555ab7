package migrate

// globMatch reports whether key matches pattern as SCAN MATCH and KEYS read it (Redis's
// stringmatchlen, case-sensitive), so that strategies that filter keys themselves select
// exactly what SCAN would. It differs from path.Match: '*' and '?' match '/' too, "[^a]"
// and "[a-z]" are classes (a reversed range "[z-a]" as well), '\' escapes the next byte
// inside and outside classes, an unclosed '[' class runs to the end of the pattern, and
// nothing is a syntax error. Bytes are compared one by one; in ranges they compare as
// signed numbers, as in a Redis built for x86, where C's char is signed.
func globMatch(pattern, key string) bool {
	if pattern == "*" { // SCAN and KEYS do not match at all then, so "" passes too
		return true
	}
	skipLonger := false
	return globMatchFrom(pattern, key, &skipLonger, 0)
}

// globMatchFrom matches pattern against s. skipLonger is set once a '*' found that the rest
// of the pattern matches nowhere in the rest of s, which ends every enclosing '*' loop too:
// a longer match for an earlier '*' cannot help then.
func globMatchFrom(p, s string, skipLonger *bool, nesting int) bool {
	if nesting > 1000 { // as Redis: protection against abusive patterns
		return false
	}
	// at returns p[i], or 0 past the end, where Redis reads the string's terminating NUL.
	at := func(i int) byte {
		if i < len(p) {
			return p[i]
		}
		return 0
	}
	i, k := 0, 0 // positions in p and s
	for i < len(p) && k < len(s) {
		switch p[i] {
		case '*':
			for i < len(p) && at(i+1) == '*' {
				i++
			}
			if i == len(p)-1 {
				return true
			}
			for ; k < len(s); k++ {
				if globMatchFrom(p[i+1:], s[k:], skipLonger, nesting+1) {
					return true
				}
				if *skipLonger {
					return false
				}
			}
			*skipLonger = true
			return false
		case '?':
			k++
		case '[':
			i++
			not := at(i) == '^'
			if not {
				i++
			}
			match := false
			for {
				if at(i) == '\\' && len(p)-i >= 2 {
					i++
					match = match || p[i] == s[k]
				} else if at(i) == ']' {
					break
				} else if i >= len(p) {
					i-- // the class runs to the end; the step below lands on it
					break
				} else if len(p)-i >= 3 && p[i+1] == '-' {
					lo, hi, c := int8(p[i]), int8(p[i+2]), int8(s[k])
					if lo > hi {
						lo, hi = hi, lo
					}
					i += 2
					match = match || (c >= lo && c <= hi)
				} else {
					match = match || p[i] == s[k]
				}
				i++
			}
			if not {
				match = !match
			}
			if !match {
				return false
			}
			k++
		case '\\':
			if len(p)-i >= 2 {
				i++
			}
			fallthrough
		default:
			if p[i] != s[k] {
				return false
			}
			k++
		}
		i++
		if k == len(s) {
			for at(i) == '*' {
				i++
			}
			break
		}
	}
	return i == len(p) && k == len(s)
}
