// Package debugfs reads an ext4 file system inside a disk image without
// mounting it, by running e2fsprogs' debugfs(8) read-only on the image
// file at a byte offset ("disk.raw?offset=N", the unix I/O manager's
// option), so no root privileges, loop devices or kernel ext4 support are
// needed.
//
// Supported subset: listing directories ([FS.ReadDirs], many directories
// in one debugfs process), reading a regular file's content
// ([FS.ReadFile]) and a symbolic link's target ([FS.Readlink]). debugfs
// runs in catastrophic mode (-c: bitmaps are not read), which is enough for
// reading and much faster on large file systems. Paths must be absolute
// and must not contain white space, quotes or control characters (debugfs
// command syntax has no reliable escaping for them).
//
// # Security
//
// The file system may be hostile: debugfs only reads it, and the listing
// parser ([ParseListing]) accepts any bytes, never panics (it is fuzzed)
// and rejects malformed lines with [ErrOutput]. A hostile file system can
// still make debugfs slow or make it report wrong data; callers compare
// what they read with digests they trust.
package debugfs

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// Errors for callers to branch on.
var (
	// ErrOutput means debugfs printed something this package cannot parse.
	ErrOutput = errors.New("debugfs: unexpected output")
	// ErrNotExist means a path does not exist in the file system.
	ErrNotExist = errors.New("debugfs: no such file or directory")
	// ErrPath means a path cannot be passed to debugfs.
	ErrPath = errors.New("debugfs: unsupported path")
)

// Mode bits of [Entry.Mode] (the file type part).
const (
	ModeType    = 0o170000
	ModeDir     = 0o040000
	ModeRegular = 0o100000
	ModeSymlink = 0o120000
)

// Entry is one directory entry, as `ls -p` prints it.
type Entry struct {
	Name  string
	Inode uint64
	Mode  uint32 // st_mode: type and permission bits
	UID   uint32
	GID   uint32
	Size  int64 // bytes; 0 for directories
}

// IsDir reports whether the entry is a directory.
func (e Entry) IsDir() bool { return e.Mode&ModeType == ModeDir }

// IsRegular reports whether the entry is a regular file.
func (e Entry) IsRegular() bool { return e.Mode&ModeType == ModeRegular }

// IsSymlink reports whether the entry is a symbolic link.
func (e Entry) IsSymlink() bool { return e.Mode&ModeType == ModeSymlink }

// FS is an ext4 file system at a byte offset of an image file.
type FS struct {
	image  string
	offset int64
	// Tool is the debugfs program; "debugfs" (looked up in $PATH) by default.
	Tool string
}

// Open returns the file system that starts offset bytes into the image
// file at path. Nothing is read until a method is called.
func Open(path string, offset int64) *FS {
	return &FS{image: path, offset: offset, Tool: "debugfs"}
}

// device is the debugfs device argument.
func (f *FS) device() string {
	if f.offset == 0 {
		return f.image
	}
	return fmt.Sprintf("%s?offset=%d", f.image, f.offset)
}

// checkPath refuses paths debugfs cannot take as one argument.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: %q is not absolute", ErrPath, p)
	}
	for _, c := range p {
		if c <= ' ' || c == '"' || c == '\'' || c == '\\' || c == 0x7f {
			return fmt.Errorf("%w: %q contains white space, quotes or control characters", ErrPath, p)
		}
	}
	return nil
}

// run runs debugfs with the given commands (one per line) and returns its
// standard output. debugfs exits 0 even when a command fails; such
// failures are reported on standard error, which is returned too.
func (f *FS) run(ctx context.Context, commands []string, stdout io.Writer) (stderr string, err error) {
	var errb bytes.Buffer
	args := []string{"-c"}
	var stdin io.Reader
	if len(commands) == 1 {
		args = append(args, "-R", commands[0])
	} else {
		args = append(args, "-f", "-")
		stdin = strings.NewReader(strings.Join(commands, "\n") + "\n")
	}
	args = append(args, f.device())
	cmd := exec.CommandContext(ctx, f.Tool, args...)
	cmd.Stdin = stdin
	cmd.Stdout = stdout
	cmd.Stderr = &errb
	cmd.Env = []string{"LC_ALL=C", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBUGFS_PAGER=__none__", "PAGER=__none__"}
	if err := cmd.Run(); err != nil {
		return errb.String(), fmt.Errorf("debugfs %s: %w: %s", f.device(), err, strings.TrimSpace(errb.String()))
	}
	// Opening the file system fails with exit status 0 too.
	if s := errb.String(); strings.Contains(s, "while opening filesystem") || strings.Contains(s, "while trying to open") {
		return s, fmt.Errorf("debugfs %s: %s", f.device(), strings.TrimSpace(s))
	}
	return errb.String(), nil
}

// ReadDirs lists directories in one debugfs run. The result maps each
// directory that exists to its entries ("." and ".." left out, in on-disk
// order); a directory that does not exist, or is not a directory, is
// absent from the map.
func (f *FS) ReadDirs(ctx context.Context, dirs []string) (map[string][]Entry, error) {
	if len(dirs) == 0 {
		return map[string][]Entry{}, nil
	}
	cmds := make([]string, len(dirs))
	for i, d := range dirs {
		if err := checkPath(d); err != nil {
			return nil, err
		}
		cmds[i] = "ls -p " + d
	}
	var out bytes.Buffer
	if len(cmds) == 1 {
		// -R prints no "debugfs: " echo line; add it so one parser reads both.
		out.WriteString("debugfs: " + cmds[0] + "\n")
	}
	if _, err := f.run(ctx, cmds, &out); err != nil {
		return nil, err
	}
	return ParseListing(&out)
}

// ParseListing parses the standard output of debugfs -f with `ls -p DIR`
// commands: each command is echoed as "debugfs: ls -p DIR", followed by
// one "/INODE/MODE/UID/GID/NAME/SIZE/" line per entry. It returns the
// entries per directory, without "." and "..". A directory that debugfs
// could not list has no "." entry and is left out.
func ParseListing(r io.Reader) (map[string][]Entry, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	out := map[string][]Entry{}
	var dir string
	var entries []Entry
	var sawDot, inDir bool
	flush := func() {
		if inDir && sawDot {
			out[dir] = entries
		}
	}
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "debugfs: "); ok {
			flush()
			d, ok := strings.CutPrefix(rest, "ls -p ")
			if !ok || d == "" {
				return nil, fmt.Errorf("%w: line %d: command %q", ErrOutput, n, rest)
			}
			dir, entries, sawDot, inDir = d, []Entry{}, false, true
			continue
		}
		if line == "" {
			continue
		}
		if !inDir {
			return nil, fmt.Errorf("%w: line %d: entry before any command", ErrOutput, n)
		}
		e, err := parseEntry(line)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrOutput, n, err)
		}
		switch e.Name {
		case ".":
			sawDot = true
		case "..":
		default:
			entries = append(entries, e)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrOutput, err)
	}
	flush()
	return out, nil
}

// parseEntry parses "/INODE/MODE/UID/GID/NAME/SIZE/" (SIZE empty for
// directories).
func parseEntry(line string) (Entry, error) {
	if len(line) < 2 || !strings.HasPrefix(line, "/") || !strings.HasSuffix(line, "/") {
		return Entry{}, fmt.Errorf("%q is not a /-delimited entry", line)
	}
	f := strings.Split(line[1:len(line)-1], "/")
	if len(f) != 6 {
		return Entry{}, fmt.Errorf("%q has %d fields, want 6", line, len(f))
	}
	ino, err1 := strconv.ParseUint(f[0], 10, 64)
	mode, err2 := strconv.ParseUint(f[1], 8, 32)
	uid, err3 := strconv.ParseUint(f[2], 10, 32)
	gid, err4 := strconv.ParseUint(f[3], 10, 32)
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return Entry{}, fmt.Errorf("%q: %v", line, err)
	}
	if f[4] == "" {
		return Entry{}, fmt.Errorf("%q has an empty name", line)
	}
	e := Entry{Name: f[4], Inode: ino, Mode: uint32(mode), UID: uint32(uid), GID: uint32(gid)}
	if f[5] != "" {
		size, err := strconv.ParseInt(f[5], 10, 64)
		if err != nil || size < 0 {
			return Entry{}, fmt.Errorf("%q: bad size", line)
		}
		e.Size = size
	}
	return e, nil
}

// ReadFile writes the content of the regular file at name to w. It
// returns an error wrapping [ErrNotExist] when the file does not exist.
// name must be a regular file (check with [FS.ReadDirs]): debugfs would
// return a directory's raw blocks or a slow symlink's target.
func (f *FS) ReadFile(ctx context.Context, name string, w io.Writer) error {
	if err := checkPath(name); err != nil {
		return err
	}
	stderr, err := f.run(ctx, []string{"cat " + name}, w)
	if err != nil {
		return err
	}
	if strings.Contains(stderr, "File not found") {
		return fmt.Errorf("%s: %w", name, ErrNotExist)
	}
	if s := strings.TrimSpace(strings.ReplaceAll(stderr, debugfsBanner(stderr), "")); s != "" {
		return fmt.Errorf("debugfs: cat %s: %s", name, s)
	}
	return nil
}

// Readlink returns the target of the symbolic link at name.
func (f *FS) Readlink(ctx context.Context, name string) (string, error) {
	if err := checkPath(name); err != nil {
		return "", err
	}
	var out bytes.Buffer
	stderr, err := f.run(ctx, []string{"stat " + name}, &out)
	if err != nil {
		return "", err
	}
	if strings.Contains(stderr, "File not found") {
		return "", fmt.Errorf("%s: %w", name, ErrNotExist)
	}
	s := out.String()
	if !strings.Contains(s, "Type: symlink") {
		return "", fmt.Errorf("debugfs: %s is not a symbolic link", name)
	}
	// Fast symlinks (target stored in the inode) print their target;
	// slow ones keep it in a data block, which cat reads.
	if i := strings.Index(s, "Fast link dest: \""); i >= 0 {
		line, _, _ := strings.Cut(s[i+len("Fast link dest: \""):], "\n")
		target, ok := strings.CutSuffix(line, "\"")
		if !ok {
			return "", fmt.Errorf("%w: stat %s: unterminated link target", ErrOutput, name)
		}
		return target, nil
	}
	var target bytes.Buffer
	if err := f.ReadFile(ctx, name, &target); err != nil {
		return "", err
	}
	return target.String(), nil
}

// debugfsBanner returns the version banner line debugfs prints on
// standard error ("debugfs 1.47.0 (5-Feb-2023)"), or "".
func debugfsBanner(stderr string) string {
	line, _, _ := strings.Cut(stderr, "\n")
	if strings.HasPrefix(line, "debugfs ") {
		return line
	}
	return ""
}

// dumpBatch bounds the dump commands of one debugfs run.
const dumpBatch = 4096

// DumpFiles copies the regular files names (absolute paths in the file
// system) to dest, each at dest plus its path, in as few debugfs runs as
// possible; parent directories are created. Owners, modes and extended
// attributes are not copied: the copies are for reading. A name that does
// not exist gives an error wrapping [ErrNotExist].
func (f *FS) DumpFiles(ctx context.Context, names []string, dest string) error {
	for start := 0; start < len(names); start += dumpBatch {
		batch := names[start:min(start+dumpBatch, len(names))]
		cmds := make([]string, len(batch))
		for i, n := range batch {
			if err := checkPath(n); err != nil {
				return err
			}
			out := filepath.Join(dest, filepath.FromSlash(path.Clean("/"+n)))
			if err := checkPath(out); err != nil {
				return fmt.Errorf("destination: %w", err)
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			cmds[i] = "dump " + n + " " + out
		}
		stderr, err := f.run(ctx, cmds, io.Discard)
		if err != nil {
			return err
		}
		if strings.Contains(stderr, "File not found") {
			return fmt.Errorf("dumping %d files: %w: %s", len(batch), ErrNotExist, strings.TrimSpace(stderr))
		}
		for _, n := range batch {
			if _, err := os.Lstat(filepath.Join(dest, filepath.FromSlash(path.Clean("/"+n)))); err != nil {
				return fmt.Errorf("debugfs: dump %s: %w: %s", n, err, strings.TrimSpace(stderr))
			}
		}
	}
	return nil
}
