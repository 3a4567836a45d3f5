// Package kmod resolves Linux kernel modules for an initramfs: it finds
// modules by name in a kernel's module tree, orders them with their
// dependencies for loading, and decompresses them.
//
// The tree is given as an [io/fs.FS] rooted at the root of an OS image;
// modules live under usr/lib/modules/<kver>/ (or lib/modules/<kver>/).
// Dependencies come from modules.dep (depmod's text format: "path: dep
// dep ...", paths relative to the modules directory) when the tree has one.
// Trees without it (Debian's linux-image packages ship none; depmod runs at
// install time) are handled by reading each needed module's .modinfo
// "depends=" field, which is what depmod itself uses. modules.builtin lists
// modules built into the kernel: asking for one is not an error, it simply
// needs no loading. modules.alias is consulted for names that are not
// module names (exact aliases such as "fs-erofs", no wildcards).
//
// Module names compare with '-' and '_' equivalent, as the kernel does.
// Files may be .ko, .ko.xz, .ko.zst or .ko.gz; [Index.Read] returns the
// plain ELF (module signatures are inside it and survive).
//
// # Security
//
// modules.dep and the modules come from the image being built, which is
// trusted as far as its contents go; parsing bounds every read and never
// follows paths outside the modules directory.
package kmod

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"strings"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// ErrNotFound means a module is neither a loadable module nor built in.
var ErrNotFound = errors.New("kmod: module not found")

// maxModuleSize bounds a decompressed module.
const maxModuleSize = 256 << 20

// Module is one loadable module.
type Module struct {
	Name string   // normalised name ('-' replaced by '_')
	Path string   // file path relative to the modules directory, e.g. "kernel/fs/erofs/erofs.ko.xz"
	Deps []string // names of the modules it depends on (direct)
}

// File returns the plain module file name an initramfs should carry,
// e.g. "erofs.ko".
func (m Module) File() string { return m.Name + ".ko" }

// Index is the module index of one kernel version.
type Index struct {
	fsys    fs.FS
	kver    string
	dir     string             // modules directory inside fsys
	byName  map[string]*Module // from modules.dep, or filled lazily from file names
	paths   map[string]string  // name -> path, when there is no modules.dep
	hasDep  bool
	builtin map[string]bool
	aliases map[string]string
}

// Name normalises a module name: '-' becomes '_' and a .ko suffix (with
// compression) is dropped.
func Name(s string) string {
	s = path.Base(s)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		s = strings.TrimSuffix(s, ext)
	}
	s = strings.TrimSuffix(s, ".ko")
	return strings.ReplaceAll(s, "-", "_")
}

// Load reads the module index of kernel kver from the image tree fsys.
func Load(fsys fs.FS, kver string) (*Index, error) {
	ix := &Index{fsys: fsys, kver: kver, byName: map[string]*Module{}, builtin: map[string]bool{}, aliases: map[string]string{}}
	for _, d := range []string{"usr/lib/modules/" + kver, "lib/modules/" + kver} {
		if fi, err := fs.Stat(fsys, d); err == nil && fi.IsDir() {
			ix.dir = d
			break
		}
	}
	if ix.dir == "" {
		return nil, fmt.Errorf("kmod: no modules directory for kernel %s (looked for usr/lib/modules/%s and lib/modules/%s)", kver, kver, kver)
	}
	if err := ix.readDep(); err != nil {
		return nil, err
	}
	if !ix.hasDep {
		if err := ix.scan(); err != nil {
			return nil, err
		}
	}
	if err := ix.readLines("modules.builtin", func(_ int, l string) error {
		ix.builtin[Name(l)] = true
		return nil
	}); err != nil {
		return nil, err
	}
	if err := ix.readLines("modules.alias", func(n int, l string) error {
		f := strings.Fields(l)
		if len(f) == 3 && f[0] == "alias" && !strings.ContainsAny(f[1], "*?[") {
			ix.aliases[strings.ReplaceAll(f[1], "-", "_")] = Name(f[2])
		}
		return nil
	}); err != nil {
		return nil, err
	}
	return ix, nil
}

// KernelVersion returns the kernel version the index is for.
func (ix *Index) KernelVersion() string { return ix.kver }

// readLines calls fn for each non-empty, non-comment line of a file in the
// modules directory; a missing file is not an error.
func (ix *Index) readLines(name string, fn func(n int, line string) error) error {
	f, err := ix.fsys.Open(path.Join(ix.dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		l := strings.TrimSpace(sc.Text())
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if err := fn(n, l); err != nil {
			return fmt.Errorf("kmod: %s line %d: %w", path.Join(ix.dir, name), n, err)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("kmod: reading %s: %w", path.Join(ix.dir, name), err)
	}
	return nil
}

// relPath makes a modules.dep path relative to the modules directory
// (old depmod wrote absolute /lib/modules/<kver>/... paths) and rejects
// anything escaping it.
func (ix *Index) relPath(p string) (string, error) {
	for _, pre := range []string{"/usr/lib/modules/" + ix.kver + "/", "/lib/modules/" + ix.kver + "/"} {
		p = strings.TrimPrefix(p, pre)
	}
	if !fs.ValidPath(p) || strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("bad module path %q", p)
	}
	return p, nil
}

func (ix *Index) readDep() error {
	return ix.readLines("modules.dep", func(_ int, l string) error {
		ix.hasDep = true
		file, deps, ok := strings.Cut(l, ":")
		if !ok {
			return fmt.Errorf("no ':' in %q", l)
		}
		p, err := ix.relPath(strings.TrimSpace(file))
		if err != nil {
			return err
		}
		m := &Module{Name: Name(p), Path: p}
		for _, d := range strings.Fields(deps) {
			dp, err := ix.relPath(d)
			if err != nil {
				return err
			}
			m.Deps = append(m.Deps, Name(dp))
		}
		ix.byName[m.Name] = m
		return nil
	})
}

// scan indexes module files by name (without reading them) for trees
// without modules.dep.
func (ix *Index) scan() error {
	ix.paths = map[string]string{}
	root, err := fs.Sub(ix.fsys, ix.dir)
	if err != nil {
		return fmt.Errorf("kmod: %w", err)
	}
	err = fs.WalkDir(root, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || !isModuleFile(p) {
			return nil
		}
		n := Name(p)
		if old, dup := ix.paths[n]; !dup || strings.HasPrefix(p, "updates/") && !strings.HasPrefix(old, "updates/") {
			ix.paths[n] = p
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("kmod: indexing %s: %w", ix.dir, err)
	}
	return nil
}

func isModuleFile(p string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(p, ext) {
			return true
		}
	}
	return false
}

// Builtin reports whether the named module is built into the kernel.
func (ix *Index) Builtin(name string) bool { return ix.builtin[Name(name)] }

// lookup returns the module for a normalised name, reading .modinfo for
// its dependencies when there is no modules.dep. ok is false when the tree
// has no such module file.
func (ix *Index) lookup(name string) (*Module, bool, error) {
	if m, ok := ix.byName[name]; ok {
		return m, true, nil
	}
	if ix.hasDep {
		return nil, false, nil
	}
	p, ok := ix.paths[name]
	if !ok {
		return nil, false, nil
	}
	data, err := ix.readFile(p)
	if err != nil {
		return nil, false, err
	}
	info, err := ModInfo(data)
	if err != nil {
		return nil, false, fmt.Errorf("kmod: %s: %w", path.Join(ix.dir, p), err)
	}
	m := &Module{Name: name, Path: p}
	for _, d := range strings.Split(info["depends"], ",") {
		if d = strings.TrimSpace(d); d != "" {
			m.Deps = append(m.Deps, Name(d))
		}
	}
	ix.byName[name] = m
	return m, true, nil
}

// Resolve returns the modules needed to load names, dependencies first,
// each once, in a deterministic order (the request order, depth first).
// Built-in modules are left out. A name that is neither a module, an alias
// nor built in is an error wrapping [ErrNotFound] naming the module and
// the kernel version.
func (ix *Index) Resolve(names ...string) ([]Module, error) {
	var out []Module
	const (
		visiting = 1
		done     = 2
	)
	state := map[string]int{}
	var visit func(name, from string) error
	visit = func(name, from string) error {
		name = Name(name)
		if ix.builtin[name] {
			return nil
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("kmod: dependency cycle through module %s (kernel %s)", name, ix.kver)
		}
		m, ok, err := ix.lookup(name)
		if err != nil {
			return err
		}
		if !ok {
			if a, isAlias := ix.aliases[name]; isAlias && a != name {
				return visit(a, from)
			}
			if from != "" {
				return fmt.Errorf("%w: %s (needed by %s) for kernel %s in %s", ErrNotFound, name, from, ix.kver, ix.dir)
			}
			return fmt.Errorf("%w: %s for kernel %s in %s", ErrNotFound, name, ix.kver, ix.dir)
		}
		state[name] = visiting
		for _, d := range m.Deps {
			if err := visit(d, name); err != nil {
				return err
			}
		}
		state[name] = done
		out = append(out, *m)
		return nil
	}
	for _, n := range names {
		if err := visit(n, ""); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Read returns the decompressed contents of a module from the index.
func (ix *Index) Read(m Module) ([]byte, error) { return ix.readFile(m.Path) }

func (ix *Index) readFile(p string) ([]byte, error) {
	full := path.Join(ix.dir, p)
	f, err := ix.fsys.Open(full)
	if err != nil {
		return nil, fmt.Errorf("kmod: %w", err)
	}
	defer f.Close()
	data, err := Decompress(p, f)
	if err != nil {
		return nil, fmt.Errorf("kmod: %s: %w", full, err)
	}
	return data, nil
}

// Decompress reads a module file named name (the suffix selects .xz, .zst,
// .gz or none) and returns the plain ELF module.
func Decompress(name string, r io.Reader) ([]byte, error) {
	var src io.Reader
	switch {
	case strings.HasSuffix(name, ".xz"):
		xr, err := xz.NewReader(bufio.NewReader(r))
		if err != nil {
			return nil, fmt.Errorf("xz: %w", err)
		}
		src = xr
	case strings.HasSuffix(name, ".zst"):
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		defer zr.Close()
		src = zr
	case strings.HasSuffix(name, ".gz"):
		gr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		src = gr
	default:
		src = r
	}
	data, err := io.ReadAll(io.LimitReader(src, maxModuleSize+1))
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	if len(data) > maxModuleSize {
		return nil, fmt.Errorf("module larger than %d bytes", maxModuleSize)
	}
	if !bytes.HasPrefix(data, []byte(elf.ELFMAG)) {
		return nil, errors.New("not an ELF module (bad magic)")
	}
	return data, nil
}

// ModInfo returns the key=value pairs of a plain module's .modinfo
// section (the last value wins for repeated keys such as alias).
func ModInfo(module []byte) (map[string]string, error) {
	ef, err := elf.NewFile(bytes.NewReader(module))
	if err != nil {
		return nil, fmt.Errorf("reading ELF: %w", err)
	}
	defer ef.Close()
	sec := ef.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	if sec.Size > 1<<20 {
		return nil, errors.New(".modinfo section too large")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("reading .modinfo: %w", err)
	}
	info := map[string]string{}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if k, v, ok := strings.Cut(string(kv), "="); ok {
			info[k] = v
		}
	}
	return info, nil
}
