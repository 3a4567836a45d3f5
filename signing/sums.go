package signing

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
)

// SumsFile is the conventional name of a compose's checksum file.
const SumsFile = "SHA256SUMS"

// ErrSums means a checksum file is malformed; errors name the line.
var ErrSums = errors.New("signing: malformed checksum file")

// Checksum is one entry of a SHA256SUMS file.
type Checksum struct {
	Name   string // slash-separated path relative to the file's directory
	SHA256 []byte
}

// maxSumsLine bounds a checksum line (name plus digest).
const maxSumsLine = 64 << 10

// ParseSums reads a checksum file: GNU coreutils lines ("HEX  NAME", or
// "HEX *NAME" in binary mode) as `sha256sum` writes them, and BSD tag
// lines ("SHA256 (NAME) = HEX") as Fedora's CHECKSUM files use. Blank
// lines and lines starting with '#' are ignored. Names must be local
// relative paths (no "..", not absolute) and unique.
func ParseSums(r io.Reader) ([]Checksum, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxSumsLine)
	var out []Checksum
	seen := map[string]bool{}
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), "\r")
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		var hexSum, name string
		if rest, ok := strings.CutPrefix(line, "SHA256 ("); ok {
			i := strings.LastIndex(rest, ") = ")
			if i < 0 {
				return nil, fmt.Errorf("%w: line %d: want \"SHA256 (NAME) = HEX\"", ErrSums, n)
			}
			name, hexSum = rest[:i], rest[i+4:]
		} else {
			if len(line) < 66 || (line[64:66] != "  " && line[64:66] != " *") {
				return nil, fmt.Errorf("%w: line %d: want \"HEX  NAME\" with a 64-digit SHA-256", ErrSums, n)
			}
			hexSum, name = line[:64], line[66:]
		}
		sum, err := hex.DecodeString(hexSum)
		if err != nil || len(sum) != 32 {
			return nil, fmt.Errorf("%w: line %d: %q is not a SHA-256 in hex", ErrSums, n, hexSum)
		}
		if name == "" || !filepath.IsLocal(filepath.FromSlash(name)) {
			return nil, fmt.Errorf("%w: line %d: name %q is not a relative path below the directory", ErrSums, n, name)
		}
		if seen[name] {
			return nil, fmt.Errorf("%w: line %d: %s listed twice", ErrSums, n, name)
		}
		seen[name] = true
		out = append(out, Checksum{Name: name, SHA256: sum})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSums, err)
	}
	return out, nil
}

// WriteSums writes sums in GNU coreutils format ("HEX  NAME\n", what
// `sha256sum -c` checks), in the given order.
func WriteSums(w io.Writer, sums []Checksum) error {
	bw := bufio.NewWriter(w)
	for _, s := range sums {
		if len(s.SHA256) != 32 || s.Name == "" || strings.ContainsAny(s.Name, "\n\r\\") {
			return fmt.Errorf("signing: cannot write checksum entry %q", s.Name)
		}
		fmt.Fprintf(bw, "%x  %s\n", s.SHA256, s.Name)
	}
	return bw.Flush()
}
