package initramfs

import (
	"fmt"
	"io"
	"path"

	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// Module is a plain (decompressed) kernel module for the builtin
// initramfs.
type Module struct {
	File string // file name, e.g. "erofs.ko"
	Data []byte
}

// Builtin describes the builtin initramfs: cfs-init as /init, the modules
// it loads, and its configuration.
type Builtin struct {
	Init    []byte   // the static cfs-init binary for the target arch
	Modules []Module // in load order
	// Config is the init configuration; its Modules field is replaced by
	// the file names of Modules, in order.
	Config initconfig.Config
}

// Mount points and directories every builtin initramfs has.
var builtinDirs = []string{"dev", "proc", "sys", "run", "sysroot", "tmp", "etc", initconfig.ModuleDir}

// WriteBuiltin writes the builtin initramfs to w: /init (0755),
// etc/cfs-init.json, lib/modules/<file> for each module, the mount point
// directories, and dev/console (character device 5:1, 0600), which the
// kernel opens for /init's standard streams before /init runs.
func WriteBuiltin(w io.Writer, c Compression, b Builtin) error {
	if len(b.Init) == 0 {
		return fmt.Errorf("initramfs: no init binary")
	}
	cfg := b.Config
	cfg.Modules = nil
	iw := NewWriter(w, c)
	for _, m := range b.Modules {
		cfg.Modules = append(cfg.Modules, m.File)
		if err := iw.AddFile(path.Join(initconfig.ModuleDir, m.File), m.Data, 0o644); err != nil {
			return err
		}
	}
	conf, err := cfg.Marshal()
	if err != nil {
		return fmt.Errorf("initramfs: init configuration: %w", err)
	}
	for _, d := range builtinDirs {
		if err := iw.AddDir(d, 0o755); err != nil {
			return err
		}
	}
	if err := iw.AddFile("init", b.Init, 0o755); err != nil {
		return err
	}
	if err := iw.AddFile(initconfig.Path, conf, 0o644); err != nil {
		return err
	}
	if err := iw.AddCharDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	return iw.Close()
}
