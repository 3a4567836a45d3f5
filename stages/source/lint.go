package source

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/cfs-compose/cfs-compose/pipeline/manifest"
)

// LintSchema is the schema version of the lints output.
const LintSchema = 1

// Severity says what a triggered lint does.
type Severity string

// Lint severities.
const (
	Fatal   Severity = "fatal"   // fails the stage
	Warning Severity = "warning" // logged and reported
)

// maxLintPaths bounds the paths a lint result lists.
const maxLintPaths = 50

// Lint is one image check.
type Lint struct {
	Name        string
	Severity    Severity
	Description string
	// check returns the finding (empty when the image passes) and the
	// paths that triggered it; it may lower the severity of one finding
	// or raise it (sev != "").
	check func(in *lintInput) (msg string, paths []string, sev Severity)
}

// lintInput is what lints look at.
type lintInput struct {
	fsys fs.FS
	a    *Analysis
	s    LintSettings
}

// LintSettings are the manifest settings lints compare the image with.
type LintSettings struct {
	Composefs       bool     `json:"composefs"`        // composefs.enabled
	ComposefsSigned bool     `json:"composefs_signed"` // composefs.signed
	Kdump           bool     `json:"kdump"`            // kernel.kdump
	Initramfs       string   `json:"initramfs"`        // initramfs.source
	Ostree          bool     `json:"ostree,omitempty"` // deploy.backend = "ostree"
	ExtraDirs       []string `json:"extra_dirs"`       // rootfs.extra_dirs
	UKI             bool     `json:"uki"`              // uki.enabled
	UKIStub         string   `json:"uki_stub"`         // uki.stub ("image" or a host path)
	Skip            []string `json:"skip"`             // lints.skip
}

// lints is the registry, in report order.
var lints = []Lint{
	{
		Name: "kernel-missing", Severity: Fatal,
		Description: "the image has no kernel (/usr/lib/modules/<version>/vmlinuz)",
		check: func(in *lintInput) (string, []string, Severity) {
			if in.a.Kernel == nil {
				return "no /usr/lib/modules/<version>/vmlinuz in the image: a bootable container ships its kernel there", []string{"/usr/lib/modules"}, ""
			}
			return "", nil, ""
		},
	},
	{
		Name: "stub-missing", Severity: Fatal,
		Description: "a UKI is wanted from the image's systemd EFI stub, but the image has none",
		check: func(in *lintInput) (string, []string, Severity) {
			if !in.s.UKI || in.s.UKIStub != "image" || in.a.Stub != nil {
				return "", nil, ""
			}
			p := "/" + path.Join(stubDir, "linux"+efiArch(in.a.Arch)+".efi.stub")
			return "uki.stub = \"image\" but the image has no " + p + " (install systemd-boot-unsigned / systemd-ukify, or set uki.stub to a host path)", []string{p}, ""
		},
	},
	{
		Name: "ostree-grub2", Severity: Fatal,
		Description: "ostree's grub2 integration is installed while composefs is enabled (it breaks with composefs; remove ostree-grub2, per the Fedora change)",
		check: func(in *lintInput) (string, []string, Severity) {
			if !in.s.Composefs {
				return "", nil, ""
			}
			paths := existing(in.fsys, "etc/grub.d/15_ostree", "usr/libexec/libostree/grub2-15_ostree", "usr/lib/ostree/ostree-grub-generator")
			if len(paths) == 0 {
				return "", nil, ""
			}
			return "ostree-grub2 is installed and composefs is enabled: remove the ostree-grub2 package from the image", paths, ""
		},
	},
	{
		Name: "kdump-composefs", Severity: Warning,
		Description: "kdump is enabled while composefs is enabled (Red Hat bug 2284097)",
		check: func(in *lintInput) (string, []string, Severity) {
			if !in.s.Composefs {
				return "", nil, ""
			}
			paths := globWants(in.fsys, "kdump.service")
			if in.s.Kdump {
				paths = append([]string{"(manifest kernel.kdump = true)"}, paths...)
			}
			if len(paths) == 0 {
				return "", nil, ""
			}
			return "kdump is enabled with composefs; crash dumps may not be captured (Red Hat bug 2284097)", paths, ""
		},
	},
	{
		Name: "prepare-root", Severity: Warning,
		Description: "/usr/lib/ostree/prepare-root.conf disagrees with the manifest's composefs setting",
		check: func(in *lintInput) (string, []string, Severity) {
			pr := in.a.PrepareRoot
			if !pr.Present {
				return "", nil, ""
			}
			v := strings.ToLower(pr.Composefs)
			var imageOn, decided bool
			switch v {
			case "yes", "true", "1", "signed", "verity":
				imageOn, decided = true, true
			case "no", "false", "0":
				imageOn, decided = false, true
			}
			mismatch := ""
			if in.s.Ostree {
				// ostree-prepare-root reads the file; the deployment's
				// kernel command line can only turn composefs off.
				switch {
				case v == "signed" && in.s.Composefs:
					return "the image requires signed ostree commits ([composefs] enabled = signed), which the pipeline does not write yet: the deployment cannot boot", []string{pr.Path}, Fatal
				case v == "verity" && in.s.Composefs:
					return "the image requires fs-verity on the deployment's composefs image and objects ([composefs] enabled = verity), which the disk does not carry when it is written: the deployment cannot boot", []string{pr.Path}, Fatal
				case decided && !imageOn && in.s.Composefs:
					return fmt.Sprintf("the image sets [composefs] enabled = %s, the manifest composefs.enabled = true; ostree-prepare-root of the image's initramfs follows the image and ignores the deployment's composefs image: change the image or set composefs.enabled = false", pr.Composefs), []string{pr.Path}, Fatal
				case decided && imageOn && !in.s.Composefs:
					return fmt.Sprintf("the image sets [composefs] enabled = %s, the manifest composefs.enabled = false; the manifest wins: the deployment's kernel command line carries ostree.prepare-root.composefs=0", pr.Composefs), []string{pr.Path}, ""
				}
				return "", nil, ""
			}
			switch {
			case decided && imageOn != in.s.Composefs:
				mismatch = fmt.Sprintf("the image sets [composefs] enabled = %s, the manifest composefs.enabled = %t", pr.Composefs, in.s.Composefs)
			case v == "signed" && in.s.Composefs && !in.s.ComposefsSigned:
				mismatch = "the image requires a signed composefs image ([composefs] enabled = signed), the manifest has composefs.signed = false"
			}
			if mismatch == "" {
				return "", nil, ""
			}
			if in.s.Initramfs == manifest.InitramfsImage {
				return mismatch + "; initramfs.source = \"image\" boots with the image's own configuration, so the manifest cannot win: use the builtin initramfs or change the image", []string{pr.Path}, Fatal
			}
			in.a.PrepareRoot.Override = true
			return mismatch + "; the manifest wins: the generated initramfs carries its own prepare-root.conf", []string{pr.Path}, ""
		},
	},
	{
		Name: "var-content", Severity: Warning,
		Description: "content under /var is shadowed by the persistent /var at boot",
		check: func(in *lintInput) (string, []string, Severity) {
			var paths []string
			_ = fs.WalkDir(in.fsys, "var", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return nil
				}
				if !d.IsDir() {
					paths = append(paths, "/"+p)
				}
				return nil
			})
			if len(paths) == 0 {
				return "", nil, ""
			}
			return fmt.Sprintf("%d file(s) under /var will be hidden by the persistent /var; ship them under /usr and create them at boot with tmpfiles.d", len(paths)), paths, ""
		},
	},
	{
		Name: "root-dirs", Severity: Warning,
		Description: "non-standard root-level entries not declared in rootfs.extra_dirs",
		check: func(in *lintInput) (string, []string, Severity) {
			ents, err := fs.ReadDir(in.fsys, ".")
			if err != nil {
				return "", nil, ""
			}
			var paths []string
			for _, e := range ents {
				p := "/" + e.Name()
				if standardRootDirs[e.Name()] || slices.Contains(in.s.ExtraDirs, p) || slices.Contains(in.s.ExtraDirs, e.Name()) {
					continue
				}
				paths = append(paths, p)
			}
			if len(paths) == 0 {
				return "", nil, ""
			}
			return "root-level entries outside the standard layout: declare the ones the OS needs in rootfs.extra_dirs (nothing can be created in / at runtime on a composefs root)", paths, ""
		},
	},
}

// standardRootDirs are the root-level entries of a bootable container.
var standardRootDirs = map[string]bool{
	"afs": true, "bin": true, "boot": true, "dev": true, "etc": true, "home": true, "lib": true, "lib32": true,
	"lib64": true, "libx32": true, "media": true, "mnt": true, "opt": true, "ostree": true, "proc": true,
	"root": true, "run": true, "sbin": true, "srv": true, "sys": true, "sysroot": true, "tmp": true,
	"usr": true, "var": true, "composefs": true,
}

func init() {
	seen := map[string]bool{}
	for _, l := range lints {
		if seen[l.Name] {
			panic("source: lint " + l.Name + " registered twice")
		}
		seen[l.Name] = true
	}
}

// Lints returns the registered lints, in report order.
func Lints() []Lint { return slices.Clone(lints) }

// LintNames returns the names of the registered lints, sorted (for
// manifest validation of lints.skip).
func LintNames() []string {
	var names []string
	for _, l := range lints {
		names = append(names, l.Name)
	}
	sort.Strings(names)
	return names
}

// LintResult is one triggered (or skipped) lint.
type LintResult struct {
	Name     string   `json:"name"`
	Severity Severity `json:"severity"`
	Message  string   `json:"message"`
	// Paths are the image paths that triggered the lint (at most 50;
	// PathCount has the total).
	Paths     []string `json:"paths"`
	PathCount int      `json:"path_count"`
	Skipped   bool     `json:"skipped"`
}

// LintReport is the "lints" output.
type LintReport struct {
	Schema   int          `json:"schema"`
	Results  []LintResult `json:"results"`  // triggered lints, skipped ones included, in registry order
	Checked  []string     `json:"checked"`  // lints that ran
	Skipped  []string     `json:"skipped"`  // lints.skip
	Fatal    int          `json:"fatal"`    // triggered, not skipped
	Warnings int          `json:"warnings"` // triggered, not skipped
}

// Failures returns the fatal, unskipped results.
func (r *LintReport) Failures() []LintResult {
	var out []LintResult
	for _, res := range r.Results {
		if res.Severity == Fatal && !res.Skipped {
			out = append(out, res)
		}
	}
	return out
}

// RunLints runs every lint on the image tree and its analysis. Skipped
// lints still run (their findings are reported as skipped) but count
// neither as fatal nor as warnings. It may set a.PrepareRoot.Override.
func RunLints(fsys fs.FS, a *Analysis, s LintSettings) (*LintReport, error) {
	for _, name := range s.Skip {
		if !slices.Contains(LintNames(), name) {
			return nil, fmt.Errorf("lints.skip: unknown lint %q (known: %s)", name, strings.Join(LintNames(), ", "))
		}
	}
	in := &lintInput{fsys: fsys, a: a, s: s}
	rep := &LintReport{Schema: LintSchema, Results: []LintResult{}, Skipped: slices.Clone(s.Skip)}
	if rep.Skipped == nil {
		rep.Skipped = []string{}
	}
	for _, l := range lints {
		rep.Checked = append(rep.Checked, l.Name)
		msg, paths, sev := l.check(in)
		if msg == "" {
			continue
		}
		if sev == "" {
			sev = l.Severity
		}
		res := LintResult{Name: l.Name, Severity: sev, Message: msg, PathCount: len(paths), Skipped: slices.Contains(s.Skip, l.Name)}
		res.Paths = paths[:min(len(paths), maxLintPaths)]
		rep.Results = append(rep.Results, res)
		switch {
		case res.Skipped:
		case sev == Fatal:
			rep.Fatal++
		default:
			rep.Warnings++
		}
	}
	return rep, nil
}

// existing returns the absolute forms of the paths that exist.
func existing(fsys fs.FS, paths ...string) []string {
	var out []string
	for _, p := range paths {
		if _, err := fs.Lstat(fsys, p); err == nil {
			out = append(out, "/"+p)
		}
	}
	return out
}

// globWants finds systemd enablement symlinks for unit in the usual
// .wants directories of /etc and /usr/lib.
func globWants(fsys fs.FS, unit string) []string {
	var out []string
	for _, base := range []string{"etc/systemd/system", "usr/lib/systemd/system"} {
		ents, err := fs.ReadDir(fsys, base)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if !strings.HasSuffix(e.Name(), ".wants") {
				continue
			}
			p := path.Join(base, e.Name(), unit)
			if _, err := fs.Lstat(fsys, p); err == nil {
				out = append(out, "/"+p)
			}
		}
	}
	return out
}
