package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/rs/zerolog"
	"github.com/spf13/cobra"
	"golang.org/x/term"
)

// Exit codes, documented in the README.
const (
	exitOK    = 0
	exitError = 1
	exitUsage = 2
)

// globals is the state shared by every command: streams, global flags and
// the logger. Commands receive it instead of reading package variables.
type globals struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	environ        []string

	logLevel  string
	logFormat string
	vars      []string // -var NAME=VALUE, in command-line order
	varFiles  []string // -var-file FILE, in command-line order
	manifests string   // manifest directory
	cacheDir  string   // artifact store; empty means the default

	logLevelV zerolog.Level
	log       zerolog.Logger
}

// usageError marks errors that should exit with status 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// errReported means the failure was already printed (for example as
// diagnostics); run exits 1 without printing anything more.
var errReported = errors.New("errors reported")

// longSingleDash lists long flags that Packer and Terraform users type with a
// single dash (-var, -var-file, -check, -diff); they are rewritten to the
// double-dash form pflag understands.
var longSingleDash = map[string]bool{"var": true, "var-file": true, "check": true, "diff": true, "write": true, "list": true}

func normalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		if len(a) > 2 && a[0] == '-' && a[1] != '-' {
			name, _, _ := strings.Cut(a[1:], "=")
			if longSingleDash[name] {
				a = "-" + a
			}
		}
		out = append(out, a)
	}
	return out
}

// run executes the command line and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &globals{stdin: stdin, stdout: stdout, stderr: stderr, environ: os.Environ()}
	root := newRootCmd(g)
	root.SetArgs(normalizeArgs(args))
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	if errors.Is(err, errReported) {
		return exitError
	}
	var ue usageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		g.printError(err, true)
		return exitUsage
	}
	g.printError(err, false)
	return exitError
}

// isCobraUsage recognises the usage errors cobra creates itself, which carry
// no type of their own.
func isCobraUsage(err error) bool {
	s := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand flag", "flag needs an argument", "invalid argument", "required flag"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

func newRootCmd(g *globals) *cobra.Command {
	root := &cobra.Command{
		Use:   "cfs-compose",
		Short: "Compose composefs-based bootable images from HCL manifests",
		Long: `cfs-compose turns HCL manifests (one per variant) into a staged pipeline:
pull the bootable container image, build its composefs image and object store,
build the initramfs and the UKI, sign everything, write GPT disk images and
boot-test them in QEMU.

Exit codes: 0 ok, 1 errors or error diagnostics, 2 usage errors.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setup()
		},
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&g.logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	pf.StringVar(&g.logFormat, "log-format", "console", "log format: console (for people) or json (for machines)")
	pf.StringArrayVar(&g.vars, "var", nil, "set a manifest variable: NAME=VALUE (repeatable; also CFS_VAR_NAME)")
	pf.StringArrayVar(&g.varFiles, "var-file", nil, "read manifest variables from an HCL file (repeatable)")
	pf.StringVarP(&g.manifests, "manifests", "m", "manifests", "directory holding the *.hcl manifests")
	pf.StringVar(&g.cacheDir, "cache-dir", "", "artifact cache directory (default $CFS_CACHE_DIR, else $XDG_CACHE_HOME/cfs-compose)")

	for _, c := range commands(g) {
		root.AddCommand(c)
	}
	return root
}

// commands lists every verb; each lives in its own file.
func commands(g *globals) []*cobra.Command {
	return []*cobra.Command{
		newVersionCmd(g),
		newKeysCmd(g),
		newValidateCmd(g),
		newFmtCmd(g),
		newSetCmd(g),
		newExplainCmd(g),
		newPlanCmd(g),
		newBuildCmd(g),
		newComposeCmd(g),
		newTestCmd(g),
		newCacheCmd(g),
		newInspectCmd(g),
		newComposefsCmd(g),
		newVerifyCmd(g),
		newBootCmd(g),
		newSignCmd(g),
	}
}

// setup validates the global flags and builds the logger.
func (g *globals) setup() error {
	lvl, err := zerolog.ParseLevel(g.logLevel)
	if err != nil || g.logLevel == "" {
		return usageError{fmt.Errorf("invalid --log-level %q (want trace, debug, info, warn or error)", g.logLevel)}
	}
	if g.logFormat != "json" && g.logFormat != "console" {
		return usageError{fmt.Errorf("invalid --log-format %q (want console or json)", g.logFormat)}
	}
	g.logLevelV = lvl
	g.log = g.newLogger(g.stderr)
	return nil
}

// logWriter wraps w in the --log-format encoding: zerolog JSON events
// written to the result come out as console lines or as JSON.
func (g *globals) logWriter(w io.Writer) io.Writer {
	if g.logFormat == "json" {
		return w
	}
	return zerolog.ConsoleWriter{Out: w, TimeFormat: "15:04:05", NoColor: !isTerminal(g.stderr)}
}

// newLogger returns a logger writing to w in the --log-format encoding.
func (g *globals) newLogger(w io.Writer) zerolog.Logger {
	return zerolog.New(g.logWriter(w)).With().Timestamp().Logger().Level(g.logLevelV)
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// exactArgs is cobra.ExactArgs with a usage error (exit 2).
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usageError{fmt.Errorf("%s: want %d argument(s), got %d", cmd.CommandPath(), n, len(args))}
		}
		return nil
	}
}

// rangeArgs is cobra.RangeArgs with a usage error (exit 2).
func rangeArgs(min, max int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) < min || (max >= 0 && len(args) > max) {
			if max < 0 {
				return usageError{fmt.Errorf("%s: want at least %d argument(s), got %d", cmd.CommandPath(), min, len(args))}
			}
			return usageError{fmt.Errorf("%s: want %d to %d argument(s), got %d", cmd.CommandPath(), min, max, len(args))}
		}
		return nil
	}
}

// manifestsArg accepts an optional positional manifests directory
// (`cfs-compose validate manifests/`, as Packer and Terraform users type
// it) in place of -m; giving both with different directories is a usage
// error.
func manifestsArg(g *globals) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) > 1:
			return usageError{fmt.Errorf("%s: want at most one argument (the manifests directory), got %d", cmd.CommandPath(), len(args))}
		case len(args) == 0:
			return nil
		}
		if f := cmd.Flags().Lookup("manifests"); f != nil && f.Changed && filepath.Clean(g.manifests) != filepath.Clean(args[0]) {
			return usageError{fmt.Errorf("%s: the manifests directory is given twice: -m %s and %s", cmd.CommandPath(), g.manifests, args[0])}
		}
		g.manifests = args[0]
		return nil
	}
}
