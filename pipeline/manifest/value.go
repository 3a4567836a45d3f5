package manifest

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Binary size units accepted in sizes ("512MiB", "10GiB"). Decimal units
// (MB, GB) are rejected on purpose: disk and partition sizes must not be
// ambiguous.
var sizeUnits = []struct {
	name  string
	shift uint
}{
	{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0},
}

// ParseSize parses a size such as "512MiB", "10GiB", "4096" or "4096B" into
// bytes. Units are the binary IEC units B, KiB, MiB, GiB and TiB (case does
// not matter); the number must be a whole non-negative decimal integer.
// Decimal units (KB, MB, GB, TB, K, M, G, T) are refused with a hint, since
// a disk size must not be ambiguous.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty size")
	}
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	num, unit := t[:i], strings.TrimSpace(t[i:])
	if num == "" {
		return 0, fmt.Errorf("size %q does not start with a whole number", s)
	}
	n, err := strconv.ParseUint(num, 10, 63)
	if err != nil {
		return 0, fmt.Errorf("size %q is out of range", s)
	}
	var shift uint
	found := unit == ""
	for _, u := range sizeUnits {
		if strings.EqualFold(unit, u.name) {
			shift, found = u.shift, true
			break
		}
	}
	if !found {
		switch strings.ToUpper(unit) {
		case "K", "KB", "M", "MB", "G", "GB", "T", "TB":
			bin := strings.ToUpper(unit[:1]) + "iB"
			return 0, fmt.Errorf("size %q uses the ambiguous unit %q; write %s%s (binary units only: B, KiB, MiB, GiB, TiB)", s, unit, num, bin)
		}
		return 0, fmt.Errorf("size %q has an unknown unit %q (want B, KiB, MiB, GiB or TiB)", s, unit)
	}
	if n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("size %q is out of range", s)
	}
	return int64(n) << shift, nil
}

// FormatSize renders a byte count with the largest binary unit that divides
// it exactly ("10GiB", "512MiB", "1536KiB", "1000B"); 0 is "0".
func FormatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range sizeUnits {
		if u.shift > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseDuration parses a positive duration such as "5m", "90s" or "1h30m"
// (Go's time.ParseDuration syntax; units ns, us, ms, s, m, h).
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("duration %q is not valid (examples: \"90s\", \"5m\", \"1h30m\")", s)
	}
	if d <= 0 {
		return 0, fmt.Errorf("duration %q must be positive", s)
	}
	return d, nil
}

// FormatDuration renders d compactly, dropping zero components: 5m, 1h30m,
// 90s is "1m30s", 1500ms is "1.5s".
func FormatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// suggest returns the candidate closest to s (Levenshtein distance at most
// a third of its length, and at least 1 edit allowed), or "".
func suggest(s string, candidates []string) string {
	best, bestD := "", 0
	for _, c := range candidates {
		d := levenshtein(strings.ToLower(s), strings.ToLower(c))
		limit := max(len(c)/3, 2)
		if d <= limit && (best == "" || d < bestD) {
			best, bestD = c, d
		}
	}
	return best
}

// didYouMean formats a " Did you mean "x"?" sentence, or "" when nothing
// is close.
func didYouMean(s string, candidates []string) string {
	if c := suggest(s, candidates); c != "" {
		return fmt.Sprintf(" Did you mean %q?", c)
	}
	return ""
}

func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

// quoteList renders a list of strings as `"a", "b" or "c"`.
func quoteList(items []string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = strconv.Quote(s)
	}
	switch len(q) {
	case 0:
		return ""
	case 1:
		return q[0]
	}
	return strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
