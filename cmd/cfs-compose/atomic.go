package main

import (
	"fmt"
	"os"

	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
)

// writeFileAtomic replaces the existing file name with data, keeping its
// permission bits; readers see the old or the new file, never a partial
// one (package atomicfile).
func writeFileAtomic(name string, data []byte) error {
	st, err := os.Stat(name)
	if err != nil {
		return fmt.Errorf("writing %s: %w", name, err)
	}
	return atomicfile.WriteFile(name, data, st.Mode().Perm())
}
