package sysroot

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

// Config is the [sysroot] group of the repository configuration, which
// changes how ostree deploys. [BootcConfig] is what `bootc install`
// sets before its first deployment.
type Config struct {
	// Bootloader is sysroot.bootloader: "" (unset, ostree's "auto"; with
	// no boot loader configuration in the sysroot it finds none) or
	// "none". Deploy writes BLS entries only, so other values are
	// rejected.
	Bootloader string
	// BootPrefix is sysroot.bootprefix: the entry's linux, initrd and
	// devicetree paths start with /boot (for a /boot on the root
	// partition).
	BootPrefix bool
	// ReadOnly is sysroot.readonly (only read by ostree on a booted
	// system).
	ReadOnly bool
}

// BootcConfig is the configuration `bootc install` writes with `ostree
// config set`: sysroot.bootloader=none, sysroot.bootprefix=true and
// sysroot.readonly=true.
var BootcConfig = Config{Bootloader: "none", BootPrefix: true, ReadOnly: true}

// Configure writes c into the configuration of the sysroot's freshly
// initialized repository (still [ostree.Config]) as `ostree config set
// sysroot.bootloader …`, `sysroot.bootprefix true` and `sysroot.readonly
// true` (in this order, for the fields set) do. A zero Config changes
// nothing.
func Configure(dir string, c Config) error {
	if c.Bootloader != "" && c.Bootloader != "none" {
		return fmt.Errorf("sysroot: %w: boot loader %q", ErrUnsupported, c.Bootloader)
	}
	if c == (Config{}) {
		return nil
	}
	p := filepath.Join(dir, RepoDir, "config")
	b, err := os.ReadFile(p)
	if err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	if string(b) != ostree.Config {
		return fmt.Errorf("sysroot: %w: %s is not the configuration of a fresh bare repository", ErrUnsupported, p)
	}
	s := string(b) + "\n[sysroot]\n"
	if c.Bootloader != "" {
		s += "bootloader=" + c.Bootloader + "\n"
	}
	if c.BootPrefix {
		s += "bootprefix=true\n"
	}
	if c.ReadOnly {
		s += "readonly=true\n"
	}
	return writeFile(p, []byte(s), fileMode)
}

// readConfig reads the [sysroot] group of the repository configuration
// as ostree does (booleans "true", "false", "1" or "0").
func readConfig(repo string) (Config, error) {
	var c Config
	b, err := os.ReadFile(filepath.Join(repo, "config"))
	if err != nil {
		return c, fmt.Errorf("sysroot: %w", err)
	}
	group := ""
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			group = line[1 : len(line)-1]
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || group != "sysroot" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		switch k {
		case "bootloader":
			c.Bootloader = v
		case "bootprefix", "readonly":
			var on bool
			switch v {
			case "true", "1":
				on = true
			case "false", "0":
			default:
				return c, fmt.Errorf("sysroot: repository config: sysroot.%s=%q is not a boolean", k, v)
			}
			if k == "bootprefix" {
				c.BootPrefix = on
			} else {
				c.ReadOnly = on
			}
		}
	}
	if c.Bootloader == "auto" {
		c.Bootloader = ""
	}
	if c.Bootloader != "" && c.Bootloader != "none" {
		return c, fmt.Errorf("sysroot: %w: repository config sysroot.bootloader=%s (only BLS entries are written)", ErrUnsupported, c.Bootloader)
	}
	return c, nil
}
