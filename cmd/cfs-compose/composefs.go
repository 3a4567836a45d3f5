package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/atomicfile"
	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/imagepull"
	"github.com/cfs-compose/cfs-compose/internal/mkcomposefs"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
)

func newComposefsCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "composefs",
		Short: "Build and inspect composefs images (mkcomposefs and composefs-info)",
		Long: `Build composefs images (EROFS metadata images whose files point into a
content-addressed object store) and inspect them. The images are
byte-identical to those of mkcomposefs 1.0.8 given the same input and options.`,
		Args: exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("%s: missing subcommand (create, digest, dump, ls, objects, missing-objects)", cmd.CommandPath())}
		},
	}
	cmd.AddCommand(
		newComposefsCreateCmd(g),
		newComposefsDigestCmd(g),
		newComposefsDumpCmd(g),
		newComposefsLsCmd(g),
		newComposefsObjectsCmd(g),
		newComposefsMissingObjectsCmd(g),
	)
	return cmd
}

// createOptions are the flags of "composefs create".
type createOptions struct {
	digestStore string
	fromFile    bool
	printDigest bool
	minVersion  int
	maxVersion  int
	useEpoch    bool
	zeroMtimes  bool
	skipXattrs  bool
	userXattrs  bool
	skipDevices bool
	threads     int
	arch        string // image SOURCE: architecture to pick
	policy      string // image SOURCE: containers-policy.json
}

func newComposefsCreateCmd(g *globals) *cobra.Command {
	var o createOptions
	cmd := &cobra.Command{
		Use:   "create [flags] SOURCE IMAGE",
		Short: "Build a composefs image from a directory, a dumpfile or a container image (mkcomposefs)",
		Long: `Build a composefs image from SOURCE, a directory, or with --from-file a
dumpfile ("-" reads standard input), or a container image reference:
oci:DIR[:TAG], oci-archive:FILE[:TAG], docker-archive:FILE (podman save), dir:DIR or docker://NAME[:TAG|@DIGEST]
(an existing path of that name is taken as a directory). An image is
streamed layer by layer, never unpacked: --arch picks the instance of a
multi-arch image (x86_64/amd64 or aarch64/arm64; default: this machine's),
and the image must pass the signature policy (--policy, or the user's
containers policy.json; local images are accepted when there is none).
IMAGE is written atomically; "-" writes the image to standard output.

With --digest-store DIR, the content of every regular file larger than 64
bytes is stored in DIR under its fs-verity digest (DIR/XX/YYYY...), and the
store is synced once at the end. --print-digest prints the composefs digest
(the fs-verity digest of the image).

--use-epoch, --skip-xattrs, --user-xattrs and --skip-devices also apply to
dumpfile input (mkcomposefs ignores them there). A dumpfile is parsed with
mkcomposefs's rules; with CFS_PARSE_STRICT set in the environment, also its
strict ones (a final newline, RDEV 0 on non-devices, symlink SIZE equal to
the target's length and no symlink CONTENT).`,
		Args: exactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCreate(cmd, g, &o, args[0], args[1])
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.digestStore, "digest-store", "", "store file contents in this object store `DIR`")
	f.BoolVar(&o.fromFile, "from-file", false, "SOURCE is a dumpfile, not a directory")
	f.BoolVar(&o.printDigest, "print-digest", false, "print the composefs digest of the image")
	f.IntVar(&o.minVersion, "min-version", 0, "minimum image format version `N` (0 or 1)")
	f.IntVar(&o.maxVersion, "max-version", 1, "maximum image format version `N` (0 or 1); 0 if only --min-version is given")
	f.BoolVar(&o.useEpoch, "use-epoch", false, "set every mtime to 0 (as mkcomposefs: not for a dumpfile SOURCE, whose times are data)")
	f.BoolVar(&o.zeroMtimes, "zero-mtimes", false, "set every mtime to 0, a dumpfile SOURCE's too (cfs-compose's own flag)")
	f.BoolVar(&o.skipXattrs, "skip-xattrs", false, "store no extended attributes")
	f.BoolVar(&o.userXattrs, "user-xattrs", false, "store only user.* extended attributes")
	f.BoolVar(&o.skipDevices, "skip-devices", false, "leave out character and block devices")
	f.IntVar(&o.threads, "threads", 0, "number of `N` goroutines reading file contents (default: number of CPUs)")
	f.StringVar(&o.arch, "arch", "", "container image SOURCE: the `ARCH` to pick from a multi-arch image (default: this machine's)")
	f.StringVar(&o.policy, "policy", "", "container image SOURCE: signature policy `FILE` (default: the user's policy.json)")
	return cmd
}

func runCreate(cmd *cobra.Command, g *globals, o *createOptions, source, image string) error {
	f := cmd.Flags()
	// As in mkcomposefs: giving either version flag makes the other default to 0.
	if f.Changed("min-version") && !f.Changed("max-version") {
		o.maxVersion = 0
	}
	if o.minVersion < 0 || o.minVersion > composefs.MaxVersion || o.maxVersion < 0 || o.maxVersion > composefs.MaxVersion {
		return usageError{fmt.Errorf("--min-version and --max-version must be between 0 and %d", composefs.MaxVersion)}
	}
	if o.skipXattrs && o.userXattrs {
		return usageError{errors.New("--skip-xattrs and --user-xattrs conflict")}
	}
	if f.Changed("threads") && o.threads < 1 {
		return usageError{fmt.Errorf("--threads must be at least 1, got %d", o.threads)}
	}
	if o.fromFile && o.digestStore != "" {
		return usageError{errors.New("--digest-store needs a directory SOURCE: a dumpfile has no file contents")}
	}
	if source == "" {
		return usageError{errors.New("empty SOURCE")}
	}
	opts := &mkcomposefs.Options{MinVersion: o.minVersion, MaxVersion: o.maxVersion, UseEpoch: o.useEpoch, ZeroMtimes: o.zeroMtimes,
		SkipXattrs: o.skipXattrs, UserXattrs: o.userXattrs, SkipDevices: o.skipDevices, Threads: o.threads}
	var src mkcomposefs.Source
	ref, err := imageSource(source)
	if err != nil {
		return err
	}
	switch {
	case ref != nil:
		if o.fromFile || f.Changed("threads") {
			return usageError{errors.New("--from-file and --threads do not apply to a container image SOURCE")}
		}
		a := o.arch
		if a == "" {
			a = runtime.GOARCH
		}
		if _, err := arch.Lookup(a); err != nil {
			return usageError{fmt.Errorf("--arch: %w", err)}
		}
		ps, err := imagepull.ResolvePolicy(o.policy, "")
		if err != nil {
			return err
		}
		src = mkcomposefs.Source{Image: ref, Arch: a, Policy: ps}
	case f.Changed("arch") || f.Changed("policy"):
		return usageError{errors.New("--arch and --policy apply to container image sources (oci:, oci-archive:, docker-archive:, dir:, docker://)")}
	case o.fromFile:
		// As in mkcomposefs, CFS_PARSE_STRICT (any value) turns on the strict rules.
		_, src.Strict = g.getenv("CFS_PARSE_STRICT")
		src.Dumpfile, src.DumpfileName = g.stdin, "<stdin>"
		if source != "-" {
			fh, err := os.Open(source)
			if err != nil {
				return fmt.Errorf("reading dumpfile: %w", err)
			}
			defer fh.Close()
			src.Dumpfile, src.DumpfileName = fh, source
		}
	default:
		src.Dir = source
	}
	if o.digestStore != "" {
		store, err := objstore.Open(o.digestStore)
		if err != nil {
			return err
		}
		defer store.Close()
		opts.Store = store
	}
	var res *mkcomposefs.Result
	if err := writeImageFile(g, image, func(w io.Writer) error {
		var err error
		res, err = mkcomposefs.Create(cmd.Context(), src, w, opts)
		return err
	}); err != nil {
		return err
	}
	if p := res.Pulled; p != nil {
		g.log.Info().Str("image", source).Str("manifest", p.Image.ManifestDigest.String()).
			Str("instance", p.Image.InstanceDigest.String()).Int("layers", len(p.Image.Layers)).
			Int("entries", p.Stats.Entries).Int64("bytes", p.Stats.Bytes).Msg("imported container image")
	}
	g.log.Debug().Str("image", image).Str("digest", fsverity.Hex(res.Digest)).Int64("size", res.Size).Msg("wrote composefs image")
	if o.printDigest {
		if _, err := fmt.Fprintln(g.stdout, fsverity.Hex(res.Digest)); err != nil {
			return err
		}
	}
	return nil
}

// imageSource parses SOURCE as a container image reference, unless it
// names an existing path. A SOURCE that is not a path but looks like
// TRANSPORT:NAME is a reference: an unknown or malformed one is an error
// (not a directory that does not exist).
func imageSource(s string) (*imagepull.Reference, error) {
	if _, err := os.Lstat(s); err == nil {
		return nil, nil
	}
	if !transportLike.MatchString(s) {
		return nil, nil
	}
	return imagepull.ParseReference(s)
}

// transportLike matches "docker://…", "oci-archive:…" and other
// TRANSPORT:NAME forms.
var transportLike = regexp.MustCompile(`^[a-z][a-z0-9-]*:`)

// writeImageFile writes an image atomically (internal/atomicfile); "-"
// writes to standard output.
func writeImageFile(g *globals, name string, write func(io.Writer) error) error {
	if name == "-" {
		if isTerminal(g.stdout) {
			return usageError{errors.New("refusing to write an image to a terminal")}
		}
		bw := bufio.NewWriter(g.stdout)
		if err := write(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := atomicfile.Create(name, 0o644)
	if err != nil {
		return fmt.Errorf("writing image %s: %w", name, err)
	}
	defer f.Abort()
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := write(bw); err != nil {
		return err // the source's own error, or a write error naming the file
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("writing image %s: %w", name, err)
	}
	return f.Commit()
}

func newComposefsDigestCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "digest FILE...",
		Short: "Print the fs-verity digest of files (composefs-info measure-file)",
		Long: `Print the fs-verity SHA-256 digest (4096-byte blocks, no salt) of each FILE,
one lower-case hex digest per line in argument order; "-" reads standard
input. The digest of an image is its composefs digest; the digest of a file
is its name in an object store.`,
		Args: rangeArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				d, err := fileDigest(g, name)
				if err != nil {
					return err
				}
				if _, err := fmt.Fprintln(g.stdout, fsverity.Hex(d)); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// fileDigest returns the fs-verity digest of a file ("-": standard input).
func fileDigest(g *globals, name string) ([fsverity.Size]byte, error) {
	r := g.stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return [fsverity.Size]byte{}, fmt.Errorf("digest: %w", err)
		}
		defer f.Close()
		r = f
	}
	d, _, err := fsverity.SumReader(r)
	if err != nil {
		return d, fmt.Errorf("digest of %s: %w", name, err)
	}
	return d, nil
}

// readImageTree reads and parses one image file.
func readImageTree(name string) (*composefs.Tree, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("reading image: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("reading image: %w", err)
	}
	tree, err := composefs.ReadImage(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("reading image %s: %w", name, err)
	}
	return tree, nil
}

func newComposefsDumpCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "dump IMAGE...",
		Short: "Print images as dumpfiles (composefs-info dump)",
		Long: `Print each IMAGE as a dumpfile, byte-identical to composefs-info dump. The
output is accepted by "composefs create --from-file".`,
		Args: rangeArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				tree, err := readImageTree(name)
				if err != nil {
					return err
				}
				if err := composefs.WriteDumpfile(g.stdout, tree); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

func newComposefsLsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "ls IMAGE...",
		Short: "List the files of images (composefs-info ls)",
		Long: `List the files of each IMAGE like composefs-info ls: one path per line,
directories with a trailing "/", symlinks with "-> TARGET", files stored in
an object store with "@ OBJECT".`,
		Args: rangeArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, name := range args {
				tree, err := readImageTree(name)
				if err != nil {
					return err
				}
				if err := composefs.WriteListing(g.stdout, tree); err != nil {
					return err
				}
			}
			return nil
		},
	}
}

// imageObjects returns the sorted union of the objects of several images.
func imageObjects(names []string) ([]string, error) {
	set := map[string]bool{}
	for _, name := range names {
		tree, err := readImageTree(name)
		if err != nil {
			return nil, err
		}
		for _, o := range tree.Objects() {
			set[o] = true
		}
	}
	out := make([]string, 0, len(set))
	for o := range set {
		out = append(out, o)
	}
	slices.Sort(out) // byte order, as composefs-info (strcmp) sorts
	return out, nil
}

func newComposefsObjectsCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "objects IMAGE...",
		Short: "List the object-store files images refer to (composefs-info objects)",
		Args:  rangeArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			objs, err := imageObjects(args)
			if err != nil {
				return err
			}
			_, err = io.WriteString(g.stdout, joinLines(objs))
			return err
		},
	}
}

func newComposefsMissingObjectsCmd(g *globals) *cobra.Command {
	var basedir string
	cmd := &cobra.Command{
		Use:   "missing-objects --basedir DIR IMAGE...",
		Short: "List the objects images refer to that an object store lacks (composefs-info missing-objects)",
		Args:  rangeArgs(1, -1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if basedir == "" {
				return usageError{errors.New("missing-objects needs --basedir DIR")}
			}
			st, err := os.Stat(basedir)
			if err != nil {
				return fmt.Errorf("object store: %w", err)
			}
			if !st.IsDir() {
				return fmt.Errorf("object store %s is not a directory", basedir)
			}
			objs, err := imageObjects(args)
			if err != nil {
				return err
			}
			missing, err := composefs.MissingObjects(objs, os.DirFS(basedir))
			if err != nil {
				return err
			}
			_, err = io.WriteString(g.stdout, joinLines(missing))
			return err
		},
	}
	cmd.Flags().StringVar(&basedir, "basedir", "", "the object store `DIR` to check")
	return cmd
}

func joinLines(s []string) string {
	if len(s) == 0 {
		return ""
	}
	return strings.Join(s, "\n") + "\n"
}
