package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// moduleInitCompressedFile is MODULE_INIT_COMPRESSED_FILE for
// finit_module(2): the kernel decompresses the module itself
// (CONFIG_MODULE_DECOMPRESS).
const moduleInitCompressedFile = 4

// moduleDeps returns the module file for name and its dependencies from a
// modules.dep stream, in load order (dependencies first). Paths are
// relative to the modules directory, as in modules.dep.
func moduleDeps(r io.Reader, name string) ([]string, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		mod, deps, ok := strings.Cut(sc.Text(), ":")
		if !ok || moduleName(mod) != name {
			continue
		}
		// modules.dep lists dependencies with the one to load last first.
		fields := strings.Fields(deps)
		order := make([]string, 0, len(fields)+1)
		for i := len(fields) - 1; i >= 0; i-- {
			order = append(order, fields[i])
		}
		return append(order, mod), nil
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading modules.dep: %w", err)
	}
	return nil, fmt.Errorf("module %s not in modules.dep", name)
}

// moduleName is the module name of a file path: base name without .ko and
// compression suffix, with '-' normalised to '_'.
func moduleName(p string) string {
	b := path.Base(p)
	for _, s := range []string{".xz", ".zst", ".gz"} {
		b = strings.TrimSuffix(b, s)
	}
	b = strings.TrimSuffix(b, ".ko")
	return strings.ReplaceAll(b, "-", "_")
}

// loadModule loads a kernel module and its dependencies from the running
// kernel's modules directory with finit_module(2).
func loadModule(name string) error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var dir string
	for _, d := range []string{"/usr/lib/modules/" + rel, "/lib/modules/" + rel} {
		if _, err := os.Stat(d + "/modules.dep"); err == nil {
			dir = d
			break
		}
	}
	if dir == "" {
		return fmt.Errorf("no modules.dep for kernel %s", rel)
	}
	f, err := os.Open(dir + "/modules.dep")
	if err != nil {
		return err
	}
	files, err := moduleDeps(f, strings.ReplaceAll(name, "-", "_"))
	f.Close()
	if err != nil {
		return err
	}
	for _, m := range files {
		if err := finitModule(dir + "/" + m); err != nil {
			return fmt.Errorf("loading %s: %w", m, err)
		}
	}
	return nil
}

func finitModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if !strings.HasSuffix(p, ".ko") {
		flags = moduleInitCompressedFile
	}
	err = unix.FinitModule(int(f.Fd()), "", flags)
	if err == unix.EEXIST {
		return nil
	}
	return err
}
