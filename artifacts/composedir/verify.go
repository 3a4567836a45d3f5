package composedir

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/arch"
	"github.com/cfs-compose/cfs-compose/internal/bootlayout"
	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/debugfs"
	"github.com/cfs-compose/cfs-compose/internal/fat"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/gpt"
	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/signing"
)

// Check names of the compose-level rows [Compose.Verify] adds to the
// rows of [signing.VerifyDir].
const (
	// CheckListed: an artifact compose.json publishes is listed in
	// SHA256SUMS.
	CheckListed = "listed"
	// CheckComposefsDigest: the composefs digest on the UKI's command line
	// equals the composefs image's fs-verity digest.
	CheckComposefsDigest = "composefs-digest"
	// CheckDiskUKI: every UKI on the disk's ESP (EFI/BOOT/*.efi,
	// EFI/Linux/*.efi) is the published UKI.
	CheckDiskUKI = "disk-uki"
	// CheckDiskImage: the root partition holds composefs/images/<digest>
	// with that fs-verity digest.
	CheckDiskImage = "disk-image"
	// CheckDiskObjects: every object the composefs image references is in
	// the root partition's composefs/objects with the right size.
	CheckDiskObjects = "disk-objects"
)

// VerifyOptions are the keys [Compose.Verify] checks with.
type VerifyOptions struct {
	// Key is the cosign public key: every artifact, every file whose
	// signature SHA256SUMS lists, and SHA256SUMS itself must carry a valid
	// detached signature by it. Nil skips signature checks.
	Key *ecdsa.PublicKey
	// DB are the Secure Boot db certificates every listed PE image (the
	// UKIs) must be Authenticode-signed for. Nil skips Authenticode.
	DB []*x509.Certificate
	// Debugfs is the debugfs program used to read ext4 root partitions;
	// empty means "debugfs" from $PATH.
	Debugfs string
}

// Verify checks the compose end to end and returns one row per check:
//
//   - the rows of [signing.VerifyDir]: SHA256SUMS's own signatures, then
//     per listed file its SHA-256, its detached signatures, and the
//     Authenticode signature of PE images;
//   - [CheckListed] for each artifact compose.json publishes;
//   - per target with a UKI and a composefs image, [CheckComposefsDigest];
//   - per target with a raw disk image, [CheckDiskUKI] (with a UKI) and
//     [CheckDiskImage] and [CheckDiskObjects] (with a composefs image),
//     comparing the disk's contents with the published files;
//   - per target whose UKI boots an ostree deployment (ostree= on its
//     command line: the ostree backend), [CheckOstreeDeployment],
//     [CheckOstreeCommit], [CheckOstreeObjects] and [CheckOstreeComposefs]
//     on the disk's ostree sysroot.
//
// Problems with the compose are failed rows; the error is only for a
// SHA256SUMS that cannot be read or parsed, or a cancelled context.
func (c *Compose) Verify(ctx context.Context, opts VerifyOptions) (*signing.Report, error) {
	data, err := os.ReadFile(filepath.Join(c.Dir, sumsPath))
	if err != nil {
		return nil, fmt.Errorf("reading checksums: %w", err)
	}
	list, err := signing.ParseSums(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(c.Dir, sumsPath), err)
	}
	sums := map[string][]byte{}
	for _, s := range list {
		sums[s.Name] = s.SHA256
	}
	need := map[string]bool{}
	for _, a := range c.Artifacts() {
		need[a] = true
	}
	for name := range sums {
		for _, suf := range []string{signing.SigSuffix, signing.BundleSuffix} {
			if signed, ok := strings.CutSuffix(name, suf); ok {
				need[signed] = true
			}
		}
	}
	rep, err := signing.VerifyDir(ctx, c.Dir, sumsPath, signing.VerifyOptions{
		Key: opts.Key, DB: opts.DB, NeedSignature: func(name string) bool { return need[name] },
	})
	if err != nil {
		return rep, err
	}
	if c.Signing != nil && !c.Signing.Sums.Signed && c.Signing.Sums.Reason != "" {
		for i := range rep.Results {
			r := &rep.Results[i]
			if r.Name == sumsPath && !r.OK {
				r.Detail += " (the build did not sign it: " + c.Signing.Sums.Reason + ")"
			}
		}
	}
	for _, a := range c.Artifacts() {
		if _, ok := sums[a]; !ok {
			rep.Add(a, CheckListed, false, "compose.json publishes it but "+sumsPath+" does not list it")
		}
	}
	v := &verifier{c: c, rep: rep, opts: opts, cfs: map[string]*cfsImage{}}
	for i := range c.Targets {
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		t := &c.Targets[i]
		if t.UKI != "" && t.Composefs != "" {
			v.composefsDigest(t)
		}
		if t.Raw != "" {
			v.disk(ctx, t)
		}
	}
	return rep, nil
}

// verifier holds what the per-target checks share.
type verifier struct {
	c    *Compose
	rep  *signing.Report
	opts VerifyOptions
	cfs  map[string]*cfsImage // by compose path
}

// cfsImage is a composefs image read once for all checks.
type cfsImage struct {
	digest  string           // hex fs-verity digest
	objects map[string]int64 // object path -> size
	err     error
}

func (v *verifier) path(rel string) string { return filepath.Join(v.c.Dir, filepath.FromSlash(rel)) }

// image reads a composefs image: its fs-verity digest and the objects it
// references.
func (v *verifier) image(rel string) *cfsImage {
	if ci, ok := v.cfs[rel]; ok {
		return ci
	}
	ci := &cfsImage{}
	v.cfs[rel] = ci
	f, err := os.Open(v.path(rel))
	if err != nil {
		ci.err = err
		return ci
	}
	defer f.Close()
	d, size, err := fsverity.SumReader(f)
	if err != nil {
		ci.err = fmt.Errorf("computing fs-verity digest of %s: %w", rel, err)
		return ci
	}
	ci.digest = fsverity.Hex(d)
	tree, err := composefs.ReadImage(f, size)
	if err != nil {
		ci.err = fmt.Errorf("reading composefs image %s: %w", rel, err)
		return ci
	}
	ci.objects = map[string]int64{}
	err = tree.Walk(func(_ string, ino *composefs.Inode, link bool) error {
		if !link && ino.Mode.IsRegular() && ino.Payload != "" {
			ci.objects[ino.Payload] = ino.Size
		}
		return nil
	})
	if err != nil {
		ci.err = fmt.Errorf("reading composefs image %s: %w", rel, err)
	}
	return ci
}

// composefsDigest compares the UKI command line's composefs digest with
// the composefs image's fs-verity digest.
func (v *verifier) composefsDigest(t *Target) {
	fail := func(format string, args ...any) {
		v.rep.Add(t.UKI, CheckComposefsDigest, false, fmt.Sprintf(format, args...))
	}
	u, err := uki.Open(v.path(t.UKI))
	if err != nil {
		fail("reading UKI: %v", err)
		return
	}
	defer u.Close()
	d, err := u.ComposefsDigest()
	switch {
	case errors.Is(err, cmdline.ErrNoDigest):
		fail("the command line carries no composefs digest, but the target has composefs image %s", t.Composefs)
		return
	case err != nil:
		fail("%v", err)
		return
	case d.Algorithm != "sha256":
		fail("the command line's composefs digest is %s; composefs images are named by SHA-256", d)
		return
	}
	ci := v.image(t.Composefs)
	if ci.digest == "" {
		fail("%v", ci.err)
		return
	}
	if d.Hex != ci.digest {
		fail("the command line has %s=%s, %s has fs-verity digest %s", d.Form, d.Hex, path.Base(t.Composefs), ci.digest)
		return
	}
	v.rep.Add(t.UKI, CheckComposefsDigest, true, fmt.Sprintf("%s=%s matches %s", d.Form, d.Hex, path.Base(t.Composefs)))
}

// disk checks the contents of a raw disk image against the other
// artifacts.
func (v *verifier) disk(ctx context.Context, t *Target) {
	var checks []string
	var ostreeCmdline string
	var initrd []byte
	if t.UKI != "" {
		checks = append(checks, CheckDiskUKI)
		// The ostree backend's UKI boots a deployment (ostree=).
		if u, err := uki.Open(v.path(t.UKI)); err == nil {
			if cl, err := u.Cmdline(); err == nil {
				if _, ok := ostreeArg(cl); ok {
					ostreeCmdline = cl
					checks = append(checks, ostreeChecks...)
					if s := u.Section(uki.SectionInitrd); s != nil {
						initrd, _ = s.Data()
					}
				}
			}
			u.Close()
		}
	}
	if t.Composefs != "" {
		checks = append(checks, CheckDiskImage, CheckDiskObjects)
	}
	if len(checks) == 0 {
		return
	}
	failAll := func(err error) {
		for _, c := range checks {
			v.rep.Add(t.Raw, c, false, err.Error())
		}
	}
	f, err := os.Open(v.path(t.Raw))
	if err != nil {
		failAll(err)
		return
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		failAll(err)
		return
	}
	tbl, err := gpt.Read(f, info.Size(), 512)
	if err != nil {
		failAll(fmt.Errorf("reading the partition table: %w", err))
		return
	}
	if t.UKI != "" {
		v.diskUKI(t, f, tbl)
	}
	if t.Composefs != "" {
		v.diskComposefs(ctx, t, tbl)
	}
	if ostreeCmdline != "" {
		root := rootPartition(tbl, t.Arch)
		if root == nil {
			for _, c := range ostreeChecks {
				v.rep.Add(t.Raw, c, false, "no root partition (GPT name \""+bootlayout.DefaultRootLabel+"\" or the "+t.Arch+" root type)")
			}
			return
		}
		for _, r := range VerifyOstree(ctx, v.path(t.Raw), int64(root.FirstLBA)*int64(tbl.SectorSize), ostreeCmdline, initrd, v.opts.Debugfs) {
			v.rep.Add(t.Raw, r.Check, r.OK, r.Detail)
		}
	}
}

// diskUKI compares the UKIs on the ESP with the published UKI file (whose
// own digest the sha256 row checks against SHA256SUMS).
func (v *verifier) diskUKI(t *Target, f *os.File, tbl *gpt.Table) {
	fail := func(format string, args ...any) {
		v.rep.Add(t.Raw, CheckDiskUKI, false, fmt.Sprintf(format, args...))
	}
	want, err := signing.HashFile(v.path(t.UKI))
	if err != nil {
		fail("%v", err)
		return
	}
	var esp *gpt.Partition
	for i := range tbl.Partitions {
		if tbl.Partitions[i].Type == gpt.TypeESP {
			esp = &tbl.Partitions[i]
			break
		}
	}
	if esp == nil {
		fail("no EFI System Partition")
		return
	}
	size := esp.Size(tbl.SectorSize)
	vol, err := fat.NewReader(io.NewSectionReader(f, int64(esp.FirstLBA)*int64(tbl.SectorSize), size), size)
	if err != nil {
		fail("reading the ESP: %v", err)
		return
	}
	var found, bad []string
	for _, dir := range []string{bootlayout.ESPBootDir, bootlayout.ESPLinuxDir} {
		ents, err := fs.ReadDir(vol, dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			fail("reading ESP %s: %v", dir, err)
			return
		}
		for _, e := range ents {
			if e.IsDir() || !strings.EqualFold(path.Ext(e.Name()), ".efi") {
				continue
			}
			name := dir + "/" + e.Name()
			got, err := hashFS(vol, name)
			if err != nil {
				fail("reading ESP %s: %v", name, err)
				return
			}
			found = append(found, name)
			if !bytes.Equal(got, want) {
				bad = append(bad, fmt.Sprintf("%s is %x", name, got[:6]))
			}
		}
	}
	switch {
	case len(found) == 0:
		fail("no UKI in %s or %s on the ESP", bootlayout.ESPBootDir, bootlayout.ESPLinuxDir)
	case len(bad) > 0:
		fail("%s; the published UKI is %x (the UKI changed after the disk was built: rebuild the disk after an Authenticode signature is applied)", strings.Join(bad, ", "), want[:6])
	default:
		v.rep.Add(t.Raw, CheckDiskUKI, true, strings.Join(found, ", ")+" match "+path.Base(t.UKI))
	}
}

func hashFS(fsys fs.FS, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

// rootPartition finds the root partition as cfs-init does: by the default
// GPT name, else the first partition of the arch's root type.
func rootPartition(tbl *gpt.Table, archName string) *gpt.Partition {
	for i := range tbl.Partitions {
		if tbl.Partitions[i].Name == bootlayout.DefaultRootLabel {
			return &tbl.Partitions[i]
		}
	}
	a, err := arch.Lookup(archName)
	if err != nil {
		return nil
	}
	typ, err := gpt.ParseGUID(a.RootPartitionType)
	if err != nil {
		return nil
	}
	for i := range tbl.Partitions {
		if tbl.Partitions[i].Type == typ {
			return &tbl.Partitions[i]
		}
	}
	return nil
}

// maxListed bounds how many problem objects a row names.
const maxListed = 5

// diskComposefs checks the composefs image and its objects on the root
// partition (docs/boot-layout.md), reading the ext4 file system with
// debugfs at the partition's offset.
func (v *verifier) diskComposefs(ctx context.Context, t *Target, tbl *gpt.Table) {
	ci := v.image(t.Composefs)
	if ci.err != nil {
		v.rep.Add(t.Raw, CheckDiskImage, false, ci.err.Error())
		v.rep.Add(t.Raw, CheckDiskObjects, false, ci.err.Error())
		return
	}
	root := rootPartition(tbl, t.Arch)
	if root == nil {
		msg := "no root partition (GPT name \"" + bootlayout.DefaultRootLabel + "\" or the " + t.Arch + " root type)"
		v.rep.Add(t.Raw, CheckDiskImage, false, msg)
		v.rep.Add(t.Raw, CheckDiskObjects, false, msg)
		return
	}
	dfs := debugfs.Open(v.path(t.Raw), int64(root.FirstLBA)*int64(tbl.SectorSize))
	if v.opts.Debugfs != "" {
		dfs.Tool = v.opts.Debugfs
	}
	imagesDir := "/" + bootlayout.ImagesDir
	dirs := []string{imagesDir}
	prefixes := map[string]bool{}
	for o := range ci.objects {
		if p, _, ok := strings.Cut(o, "/"); ok && isHex(p) && len(p) == 2 && !prefixes[p] {
			prefixes[p] = true
			dirs = append(dirs, "/"+bootlayout.Composefs.Object(p))
		}
	}
	sort.Strings(dirs[1:])
	listing, err := dfs.ReadDirs(ctx, dirs)
	if err != nil {
		v.rep.Add(t.Raw, CheckDiskImage, false, err.Error())
		v.rep.Add(t.Raw, CheckDiskObjects, false, err.Error())
		return
	}
	v.diskImage(ctx, t, dfs, listing[imagesDir], ci.digest)

	objects := make([]string, 0, len(ci.objects))
	for o := range ci.objects {
		objects = append(objects, o)
	}
	sort.Strings(objects)
	var problems []string
	nproblems := 0
	for _, o := range objects {
		prefix, name, _ := strings.Cut(o, "/")
		var why string
		if len(prefix) != 2 || !isHex(prefix) || len(name) != 62 || !isHex(name) {
			why = "not an object-store path"
		} else {
			why = "missing"
			for _, e := range listing["/"+bootlayout.Composefs.Object(prefix)] {
				if e.Name != name {
					continue
				}
				switch {
				case !e.IsRegular():
					why = "not a regular file"
				case e.Size != ci.objects[o]:
					why = fmt.Sprintf("%d bytes, want %d", e.Size, ci.objects[o])
				default:
					why = ""
				}
				break
			}
		}
		if why != "" {
			nproblems++
			if len(problems) < maxListed {
				problems = append(problems, o+" ("+why+")")
			}
		}
	}
	if nproblems > 0 {
		more := ""
		if nproblems > len(problems) {
			more = fmt.Sprintf(", and %d more", nproblems-len(problems))
		}
		v.rep.Add(t.Raw, CheckDiskObjects, false, fmt.Sprintf("%d of %d objects of %s not in %s: %s%s",
			nproblems, len(objects), path.Base(t.Composefs), bootlayout.ObjectsDir, strings.Join(problems, ", "), more))
		return
	}
	v.rep.Add(t.Raw, CheckDiskObjects, true, fmt.Sprintf("all %d objects of %s present", len(objects), path.Base(t.Composefs)))
}

// diskImage checks composefs/images/<digest> on the root partition: a
// regular file, or a relative symlink to one, with that fs-verity digest.
func (v *verifier) diskImage(ctx context.Context, t *Target, dfs *debugfs.FS, images []debugfs.Entry, digest string) {
	fail := func(format string, args ...any) {
		v.rep.Add(t.Raw, CheckDiskImage, false, fmt.Sprintf(format, args...))
	}
	rel := bootlayout.Composefs.Image(digest)
	name := "/" + rel
	var entry *debugfs.Entry
	for i := range images {
		if images[i].Name == digest {
			entry = &images[i]
		}
	}
	file := name
	switch {
	case entry == nil:
		fail("%s is missing", rel)
		return
	case entry.IsSymlink():
		target, err := dfs.Readlink(ctx, name)
		if err != nil {
			fail("%v", err)
			return
		}
		if path.IsAbs(target) {
			file = path.Clean(target)
		} else {
			file = path.Join("/"+bootlayout.ImagesDir, target)
		}
		// The target must be a regular file: list its directory.
		l, err := dfs.ReadDirs(ctx, []string{path.Dir(file)})
		if err != nil {
			fail("%v", err)
			return
		}
		ok := false
		for _, e := range l[path.Dir(file)] {
			ok = ok || (e.Name == path.Base(file) && e.IsRegular())
		}
		if !ok {
			fail("%s links to %s, which is not a regular file", rel, target)
			return
		}
	case !entry.IsRegular():
		fail("%s is not a regular file or symbolic link", rel)
		return
	}
	h := fsverity.New()
	if err := dfs.ReadFile(ctx, file, h); err != nil {
		fail("%v", err)
		return
	}
	if got := fsverity.Hex(h.Sum()); got != digest {
		fail("%s has fs-verity digest %s", rel, got)
		return
	}
	v.rep.Add(t.Raw, CheckDiskImage, true, rel+" is "+path.Base(t.Composefs))
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}
