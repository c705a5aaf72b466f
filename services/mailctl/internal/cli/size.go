package cli

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Sizes use binary units, as dovecot's quota settings do: 1K = 1024 bytes,
// 1M = 1024K, and so on. A trailing "B" or "iB" is accepted ("1GiB").
var sizeUnits = []struct {
	suffix string
	factor int64
}{{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}}

// parseSize reads "0", "unlimited", "512", "500M", "2G", "1GiB".
func parseSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	if t == "UNLIMITED" {
		return 0, nil
	}
	t = strings.TrimSuffix(strings.TrimSuffix(t, "IB"), "B")
	factor := int64(1)
	for _, u := range sizeUnits {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, factor = rest, u.factor
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n < 0 || math.IsInf(n, 0) || math.IsNaN(n) || n*float64(factor) > math.MaxInt64/2 {
		return 0, fmt.Errorf("%q is not a size: use a number with an optional K, M, G or T suffix, or 0 for unlimited", s)
	}
	return int64(n * float64(factor)), nil
}

// formatSize prints bytes in the largest unit that divides them exactly.
func formatSize(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	for _, u := range sizeUnits {
		if n%u.factor == 0 {
			return strconv.FormatInt(n/u.factor, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10)
}

// formatBytes prints a size rounded to the largest unit it reaches, for
// reading rather than for parsing back: "512B", "4.1K", "100K", "1.5M".
func formatBytes(n int64) string {
	for _, u := range sizeUnits {
		if n >= u.factor {
			v := float64(n) / float64(u.factor)
			if v >= 10 {
				return strconv.FormatFloat(math.Round(v), 'f', -1, 64) + u.suffix
			}
			return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
