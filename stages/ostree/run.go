package ostree

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/artifacts"
	cfs "github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/objstore"
	ot "github.com/cfs-compose/cfs-compose/internal/ostree"
	"github.com/cfs-compose/cfs-compose/internal/ostree/sysroot"
	"github.com/cfs-compose/cfs-compose/pipeline"
	"github.com/cfs-compose/cfs-compose/stages/contract"
	"github.com/cfs-compose/cfs-compose/stages/internal/imageinput"
)

// run writes the sysroot: repository, commit, stateroot and deployment.
func run(ctx context.Context, rc *pipeline.RunContext, c *Config) error {
	an, err := imageinput.Analysis(rc)
	if err != nil {
		return err
	}
	if an.Kernel == nil {
		return errors.New("the image has no kernel (no /usr/lib/modules/<version>/vmlinuz); an ostree deployment needs one")
	}
	src, err := imageinput.Tree(rc)
	if err != nil {
		return err
	}
	tree, err := commitTree(src)
	if err != nil {
		return err
	}
	objects, err := objstore.Open(rc.ObjectsDir())
	if err != nil {
		return err
	}
	defer objects.Close()

	dir := filepath.Join(rc.TempDir(), "sysroot")
	commit, dep, err := writeSysroot(ctx, dir, tree, objects, c, an)
	if err != nil {
		return err
	}
	d := &artifacts.OstreeDeployment{
		Schema: artifacts.OstreeDeploymentSchema, Commit: commit.String(), Ref: c.Ref, Stateroot: c.Stateroot,
		Dir: dep.Dir, BootCsum: dep.BootCsum, KernelVersion: dep.KernelVersion, Entry: dep.Entry,
		Cmdline: dep.Options, Origin: c.Origin, SignedBy: c.SignPub,
	}
	if dep.ComposefsDigest != nil {
		d.ComposefsDigest = hex.EncodeToString(dep.ComposefsDigest[:])
	}
	if err := contract.OstreeSysroot.AddTree(rc, dir, nil); err != nil {
		return err
	}
	if err := contract.OstreeDeployment.Set(rc, d, nil); err != nil {
		return err
	}
	rc.Log.Info().Str("commit", d.Commit).Str("stateroot", d.Stateroot).Str("cmdline", d.Cmdline).
		Bool("composefs", c.Composefs).Msg("ostree deployment written")
	for k, v := range map[string]any{"commit": d.Commit, "ref": d.Ref, "stateroot": d.Stateroot, "boot_csum": d.BootCsum, "cmdline": d.Cmdline, "composefs_digest": d.ComposefsDigest} {
		if err := rc.SetMeta(k, v); err != nil {
			return err
		}
	}
	return nil
}

// writeSysroot writes the sysroot into dir: the repository with the
// commit of tree, the stateroot and the deployment.
func writeSysroot(ctx context.Context, dir string, tree *cfs.Tree, objects *objstore.Store, c *Config, an *artifacts.ImageAnalysis) (ot.Checksum, *sysroot.Deployment, error) {
	if err := sysroot.Init(dir, &sysroot.InitOptions{Modern: true}); err != nil {
		return ot.Checksum{}, nil, err
	}
	if err := sysroot.Configure(dir, sysroot.BootcConfig); err != nil {
		return ot.Checksum{}, nil, err
	}
	if err := sysroot.InitStateroot(dir, c.Stateroot); err != nil {
		return ot.Checksum{}, nil, err
	}
	if err := ctx.Err(); err != nil {
		return ot.Checksum{}, nil, err
	}
	commit, err := writeCommit(filepath.Join(dir, sysroot.RepoDir), tree, objects, c, an)
	if err != nil {
		return commit, nil, err
	}
	if err := ctx.Err(); err != nil {
		return commit, nil, err
	}
	dep, err := sysroot.Deploy(dir, commit, &sysroot.Options{
		Stateroot: c.Stateroot, Kargs: c.Kargs, Origin: c.Origin, Composefs: c.Composefs,
		ComposefsVerity: c.ComposefsVerity,
	})
	if err != nil {
		return commit, nil, fmt.Errorf("deploying commit %s: %w", commit, err)
	}
	// The store keeps no inode flags and must be able to remove the
	// tree: the disk stage sets the flag again in the root partition.
	if err := clearImmutable(filepath.Join(dir, dep.Dir)); err != nil {
		return commit, nil, err
	}
	return commit, dep, nil
}

// writeCommit writes tree and its commit into the repository and points
// the ref at it.
func writeCommit(repo string, tree *cfs.Tree, objects *objstore.Store, c *Config, an *artifacts.ImageAnalysis) (ot.Checksum, error) {
	var commit ot.Checksum
	w, err := ot.NewWriter(repo, &ot.Options{Objects: objects.FS()})
	if err != nil {
		return commit, err
	}
	root, err := w.WriteTree(tree)
	if err != nil {
		w.Close()
		return commit, fmt.Errorf("writing the image tree into %s: %w", sysroot.RepoDir, err)
	}
	var meta []ot.MetaEntry
	if c.Composefs {
		r, err := ot.OpenDir(repo)
		if err != nil {
			w.Close()
			return commit, err
		}
		digest, err := r.ComposefsDigest(root)
		r.Close()
		if err != nil {
			w.Close()
			return commit, fmt.Errorf("computing the commit's composefs digest: %w", err)
		}
		meta = append(meta, ot.ComposefsDigestEntry(digest))
	}
	if v := version(an); v != "" {
		meta = append(meta, ot.MetaEntry{Key: ot.MetaVersion, Value: ot.String(v)})
	}
	meta = append(meta,
		ot.MetaEntry{Key: ot.MetaBootable, Value: ot.Bool(true)},
		ot.MetaEntry{Key: ot.MetaLinux, Value: ot.String(an.Kernel.Version)},
		ot.RefBinding(c.Ref))
	rootIno := tree.Root()
	cm := &ot.Commit{
		Metadata: meta, Subject: subject(an),
		Timestamp:    time.Unix(rootIno.Mtime.Sec, 0).UTC(),
		RootContents: root.Contents, RootMeta: root.Meta,
	}
	commit, err = w.WriteCommit(cm)
	if err == nil && c.SignKey != "" {
		err = signCommit(w, commit, cm, c)
	}
	if err == nil {
		err = w.SetRef(c.Ref, commit)
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return commit, fmt.Errorf("writing the commit: %w", err)
	}
	return commit, nil
}

// signCommit signs the commit with the planned key (ostree sign
// --sign-type=ed25519: a detached signature over the commit object in the
// commit's detached metadata).
func signCommit(w *ot.Writer, commit ot.Checksum, cm *ot.Commit, c *Config) error {
	k, err := loadSigningKey(c.SignKey)
	if err != nil {
		return err
	}
	if got := ot.PublicKeyText(k.Public().(ed25519.PublicKey)); got != c.SignPub {
		return fmt.Errorf("signing.ostree_key %s changed since the plan: public key %s, planned %s", c.SignKey, got, c.SignPub)
	}
	data, err := cm.MarshalBinary()
	if err != nil {
		return err
	}
	sig := ot.SignCommit(data, k)
	return w.WriteCommitMeta(commit, []ot.MetaEntry{{Key: ot.MetaSignEd25519, Value: ot.ByteArrays([][]byte{sig})}})
}

// subject is the commit subject: the image's os-release PRETTY_NAME, else
// NAME and VERSION.
func subject(an *artifacts.ImageAnalysis) string {
	osr := an.OSRelease
	if s := osr["PRETTY_NAME"]; s != "" {
		return s
	}
	if s := osr["NAME"] + " " + osr["VERSION"]; s != " " {
		return s
	}
	return "cfs-compose"
}

// version is the commit's version metadata: the image's
// org.opencontainers.image.version label, else os-release OSTREE_VERSION,
// IMAGE_VERSION or VERSION_ID; "" for none.
func version(an *artifacts.ImageAnalysis) string {
	if v := an.Labels["org.opencontainers.image.version"]; v != "" {
		return v
	}
	for _, k := range []string{"OSTREE_VERSION", "IMAGE_VERSION", "VERSION_ID"} {
		if v := an.OSRelease[k]; v != "" {
			return v
		}
	}
	return ""
}

// clearImmutable clears the immutable inode flag of the directory p.
func clearImmutable(p string) error {
	fd, err := unix.Open(p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening %s: %w", p, err)
	}
	defer unix.Close(fd)
	flags, err := unix.IoctlGetUint32(fd, unix.FS_IOC_GETFLAGS)
	if errors.Is(err, unix.ENOTTY) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading inode flags of %s: %w", p, err)
	}
	const immutable = 0x10 // FS_IMMUTABLE_FL
	if flags&immutable == 0 {
		return nil
	}
	if err := unix.IoctlSetPointerInt(fd, unix.FS_IOC_SETFLAGS, int(flags&^immutable)); err != nil {
		return fmt.Errorf("clearing the immutable flag of %s: %w", p, err)
	}
	return nil
}
