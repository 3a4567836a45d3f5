package main

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

// Kernel command-line arguments cfs-init reads (besides the composefs
// digest).
const (
	argVerity   = "cfs.verity"   // none|enable|require: may raise the configured mode, never lower it
	argRootWait = "cfs.rootwait" // seconds to wait for the root partition (default 10)
	argInit     = "init"         // the image's init (default /sbin/init, then /usr/lib/systemd/systemd)
	argEROFS    = "cfs.erofs"    // auto (file-backed mount, else a loop device) or loop (always a loop device)
	argOstree   = "ostree"       // ostree mode: /ostree/boot.N/STATEROOT/BOOTCSUM/SERIAL, the deployment to boot
)

const defaultRootWait = 10 * time.Second

// options is the effective boot configuration: the init config merged
// with the kernel command line.
type options struct {
	composefs bool
	digest    cmdline.Digest // composefs only
	verity    string         // initconfig.Verity*
	signed    bool
	rootLabel string
	rootWait  time.Duration
	init      string // empty: search the defaults
	erofsLoop bool   // mount the EROFS image through a loop device
	ostree    string // ostree mode: the ostree= argument; empty otherwise
	notes     []string
}

var verityLevel = map[string]int{initconfig.VerityNone: 0, initconfig.VerityEnable: 1, initconfig.VerityRequire: 2}

// resolveOptions merges the configuration and the command line. Anything
// that could boot an unverified root is an error.
func resolveOptions(cfg initconfig.Config, params []cmdline.Param) (options, error) {
	o := options{composefs: cfg.Composefs, verity: cfg.Verity, signed: cfg.Signed, rootLabel: cfg.RootLabel, rootWait: defaultRootWait}
	if v, ok := cmdline.Lookup(params, argVerity); ok {
		lv, known := verityLevel[v]
		switch {
		case !known:
			return o, fmt.Errorf("%s=%s: want none, enable or require", argVerity, v)
		case lv > verityLevel[o.verity]:
			o.verity = v
		case lv < verityLevel[o.verity]:
			o.notes = append(o.notes, fmt.Sprintf("ignoring %s=%s: the initramfs requires verity=%s", argVerity, v, o.verity))
		}
	}
	if v, ok := cmdline.Lookup(params, argRootWait); ok {
		n, err := strconv.ParseUint(v, 10, 16)
		if err != nil {
			return o, fmt.Errorf("%s=%s: want a number of seconds", argRootWait, v)
		}
		o.rootWait = time.Duration(n) * time.Second
	}
	if v, ok := cmdline.Lookup(params, argInit); ok && v != "" {
		if v[0] != '/' {
			return o, fmt.Errorf("init=%s: want an absolute path", v)
		}
		o.init = v
	}
	switch v, _ := cmdline.Lookup(params, argEROFS); v {
	case "", "auto":
	case "loop":
		o.erofsLoop = true
	default:
		return o, fmt.Errorf("%s=%s: want auto or loop", argEROFS, v)
	}
	if cfg.Ostree {
		v, _ := cmdline.Lookup(params, argOstree)
		if !strings.HasPrefix(v, "/") {
			return o, fmt.Errorf("this initramfs boots an ostree deployment, but the kernel command line has no %s=/ostree/boot.N/STATEROOT/BOOTCSUM/SERIAL (got %q)", argOstree, v)
		}
		o.ostree = v
	}
	d, err := cmdline.ComposefsDigest(params)
	if !o.composefs {
		if err == nil {
			o.notes = append(o.notes, "composefs is disabled in this initramfs: ignoring the composefs digest on the command line")
		}
		return o, nil
	}
	switch {
	case errors.Is(err, cmdline.ErrNoDigest):
		return o, errors.New("composefs is enabled but the kernel command line has no composefs=<digest>")
	case err != nil:
		return o, err
	case d.Algorithm != "sha256":
		return o, fmt.Errorf("composefs digest %s: only sha256 fs-verity digests are supported", d)
	}
	o.digest = d
	return o, nil
}
