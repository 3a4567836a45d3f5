package composedir

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/cfs-compose/cfs-compose/internal/composefs"
	"github.com/cfs-compose/cfs-compose/internal/debugfs"
	"github.com/cfs-compose/cfs-compose/internal/fsverity"
	"github.com/cfs-compose/cfs-compose/internal/initramfs"
	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

// Check names of the rows for a disk of the ostree backend (the UKI's
// command line has ostree=).
const (
	// CheckOstreeDeployment: the command line's ostree= path resolves,
	// through the boot links, to a deployment directory
	// ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL with its origin file.
	CheckOstreeDeployment = "ostree-deployment"
	// CheckOstreeCommit: the deployed commit's object is in the
	// repository with that checksum, and ostree's ref ostree/1/1/0 keeps
	// it.
	CheckOstreeCommit = "ostree-commit"
	// CheckOstreeObjects: every metadata object of the repository
	// (commit, dirtree, dirmeta) has the checksum it is named by, and
	// every object the commit's tree references is present.
	CheckOstreeObjects = "ostree-objects"
	// CheckOstreeComposefs: with composefs, the deployment's .ostree.cfs
	// has the fs-verity digest the commit records
	// (ostree.composefs.digest.v0) and the command line does not turn
	// composefs off; without, there is no .ostree.cfs and the command line
	// has ostree.prepare-root.composefs=0.
	CheckOstreeComposefs = "ostree-composefs"
	// CheckOstreeSignature: a signed commit (ostree.sign.ed25519 in its
	// detached metadata) verifies with the key the UKI's initramfs carries
	// for ostree-prepare-root (/etc/ostree/initramfs-root-binding.key),
	// and a commit is signed when the initramfs carries a key. The row is
	// there only when either is.
	CheckOstreeSignature = "ostree-signature"
)

// ostreeChecks are the rows of an ostree disk, in report order.
var ostreeChecks = []string{CheckOstreeDeployment, CheckOstreeCommit, CheckOstreeObjects, CheckOstreeComposefs}

// ostreeArg returns the value of ostree= on a kernel command line.
func ostreeArg(cmdline string) (string, bool) {
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "ostree="); ok {
			return v, true
		}
	}
	return "", false
}

// maxLinks bounds the symbolic links followed resolving ostree=.
const maxLinks = 40

// resolve follows p (absolute, in the file system of dfs) through symbolic
// links, which may not lead out of the file system's root (a ".." at the
// root stays there, as in a chroot), and returns the resolved path.
func resolve(ctx context.Context, dfs *debugfs.FS, p string) (string, error) {
	rest := strings.Split(strings.Trim(path.Clean("/"+p), "/"), "/")
	cur, links := "/", 0
	for len(rest) > 0 {
		name := rest[0]
		rest = rest[1:]
		if name == "" || name == "." {
			continue
		}
		if name == ".." {
			cur = path.Dir(cur)
			continue
		}
		listing, err := dfs.ReadDirs(ctx, []string{cur})
		if err != nil {
			return "", err
		}
		ents, ok := listing[cur]
		if !ok {
			return "", fmt.Errorf("%s is not a directory", cur)
		}
		var e *debugfs.Entry
		for i := range ents {
			if ents[i].Name == name {
				e = &ents[i]
				break
			}
		}
		next := path.Join(cur, name)
		switch {
		case e == nil:
			return "", fmt.Errorf("%s does not exist", next)
		case e.IsSymlink():
			if links++; links > maxLinks {
				return "", fmt.Errorf("more than %d symbolic links resolving %s", maxLinks, p)
			}
			target, err := dfs.Readlink(ctx, next)
			if err != nil {
				return "", err
			}
			if strings.HasPrefix(target, "/") {
				cur = "/"
			}
			rest = append(strings.Split(strings.Trim(target, "/"), "/"), rest...)
		default:
			cur = next
		}
	}
	return cur, nil
}

// OstreeRow is one result of [VerifyOstree].
type OstreeRow struct {
	Check  string // one of CheckOstreeDeployment, …
	OK     bool
	Detail string
}

// VerifyOstree checks the ostree sysroot in the ext4 file system offset
// bytes into the disk image raw, booted with the kernel command line
// cmdline (which must have ostree=), and returns one row per check
// (CheckOstreeDeployment, CheckOstreeCommit, CheckOstreeObjects,
// CheckOstreeComposefs). debugfsTool is the debugfs program ("" for
// "debugfs" from $PATH). [Compose.Verify] runs it for every disk whose
// UKI boots an ostree deployment.
//
// initrd is the UKI's initramfs: the key a signed commit must verify with
// is read from it ([CheckOstreeSignature]); nil skips that check.
func VerifyOstree(ctx context.Context, raw string, offset int64, cmdline string, initrd []byte, debugfsTool string) []OstreeRow {
	dfs := debugfs.Open(raw, offset)
	if debugfsTool != "" {
		dfs.Tool = debugfsTool
	}
	rows := verifyOstree(ctx, dfs, cmdline, initrd)
	return rows
}

// verifyOstree returns one row per [ostreeChecks] for the ostree sysroot
// of dfs booted with cmdline. A check that cannot run because an earlier
// one failed fails naming that one.
func verifyOstree(ctx context.Context, dfs *debugfs.FS, cmdline string, initrd []byte) []OstreeRow {
	var rows []OstreeRow
	add := func(check string, ok bool, format string, a ...any) {
		rows = append(rows, OstreeRow{check, ok, fmt.Sprintf(format, a...)})
	}
	failRest := func(why string) []OstreeRow {
		for _, c := range ostreeChecks[len(rows):] {
			add(c, false, "not checked: %s", why)
		}
		return rows
	}

	// The deployment the command line boots.
	arg, _ := ostreeArg(cmdline)
	dir, err := resolve(ctx, dfs, arg)
	if err != nil {
		add(CheckOstreeDeployment, false, "ostree=%s: %v", arg, err)
		return failRest(CheckOstreeDeployment + " failed")
	}
	deployParent := path.Dir(dir)
	stateroot := path.Base(path.Dir(deployParent))
	base := path.Base(dir)
	commitHex, serial, _ := strings.Cut(base, ".")
	if path.Base(deployParent) != "deploy" || path.Dir(path.Dir(deployParent)) != "/ostree/deploy" || serial == "" {
		add(CheckOstreeDeployment, false, "ostree=%s resolves to %s, not a deployment ostree/deploy/STATEROOT/deploy/COMMIT.SERIAL", arg, dir)
		return failRest(CheckOstreeDeployment + " failed")
	}
	commit, err := ostree.ParseChecksum(commitHex)
	if err != nil {
		add(CheckOstreeDeployment, false, "deployment %s: %v", dir, err)
		return failRest(CheckOstreeDeployment + " failed")
	}
	listing, err := dfs.ReadDirs(ctx, []string{deployParent, dir})
	if err != nil {
		add(CheckOstreeDeployment, false, "%v", err)
		return failRest(CheckOstreeDeployment + " failed")
	}
	if !hasEntry(listing[deployParent], base+".origin", (*debugfs.Entry).IsRegular) {
		add(CheckOstreeDeployment, false, "deployment %s has no origin file %s.origin", dir, base)
		return failRest(CheckOstreeDeployment + " failed")
	}
	add(CheckOstreeDeployment, true, "ostree=%s is stateroot %s, deployment %s", arg, stateroot, base)

	// The repository's objects: list every objects/XX, copy the metadata
	// objects out, check each against its name.
	const repo = "/ostree/repo"
	dirs := []string{repo + "/refs/heads/ostree/1/1"}
	for i := range 256 {
		dirs = append(dirs, fmt.Sprintf("%s/objects/%02x", repo, i))
	}
	objs, err := dfs.ReadDirs(ctx, dirs)
	if err != nil {
		add(CheckOstreeCommit, false, "listing the repository: %v", err)
		return failRest("the repository could not be listed")
	}
	present := map[string]bool{} // "xx/rest.ext" of regular files and symlinks
	sizes := map[string]int64{}  // "xx/rest.file" of regular files: size
	var meta []string
	for _, d := range dirs[1:] {
		for _, e := range objs[d] {
			if !e.IsRegular() && !e.IsSymlink() {
				continue
			}
			rel := path.Base(d) + "/" + e.Name
			present[rel] = true
			if e.IsRegular() {
				sizes[rel] = e.Size
			}
			switch path.Ext(e.Name) {
			case ".commit", ".dirtree", ".dirmeta", ".commitmeta":
				if e.IsRegular() {
					meta = append(meta, d+"/"+e.Name)
				}
			}
		}
	}
	tmp, err := os.MkdirTemp("", "cfs-verify-ostree-*")
	if err != nil {
		add(CheckOstreeCommit, false, "%v", err)
		return failRest(err.Error())
	}
	defer os.RemoveAll(tmp)
	if err := dfs.DumpFiles(ctx, meta, tmp); err != nil {
		add(CheckOstreeCommit, false, "copying the metadata objects: %v", err)
		return failRest("the metadata objects could not be read")
	}
	local := filepath.Join(tmp, filepath.FromSlash(strings.TrimPrefix(repo, "/")))

	commitObj := ostree.ObjectPath(commit, ostree.ObjectCommit)
	raw, err := os.ReadFile(filepath.Join(local, filepath.FromSlash(commitObj)))
	var refErr error
	switch {
	case err != nil:
		add(CheckOstreeCommit, false, "the deployed commit %s is not in the repository (%s)", commit, commitObj)
	case sha256.Sum256(raw) != commit:
		add(CheckOstreeCommit, false, "%s has checksum %x, not the %s its name says", commitObj, sha256.Sum256(raw), commit)
	default:
		refErr = checkRef(ctx, dfs, objs[dirs[0]], repo+"/refs/heads/ostree/1/1/0", commit)
		if refErr != nil {
			add(CheckOstreeCommit, false, "commit %s: %v", commit, refErr)
		} else {
			add(CheckOstreeCommit, true, "commit %s (%d bytes), kept by ref ostree/1/1/0", commit, len(raw))
		}
	}
	if rows[len(rows)-1].Check != CheckOstreeCommit || !rows[len(rows)-1].OK {
		return failRest(CheckOstreeCommit + " failed")
	}

	r := ostree.NewReader(os.DirFS(local))
	bad, nmeta := checkMetaObjects(local, meta, repo)
	cm, err := r.ReadCommit(commit)
	if err != nil {
		add(CheckOstreeObjects, false, "%v", err)
		return failRest("the commit cannot be read")
	}
	if len(bad) > 0 {
		add(CheckOstreeObjects, false, "%d of %d metadata objects with a wrong checksum%s", len(bad), nmeta, listSome(bad))
		return failRest(CheckOstreeObjects + " failed")
	}
	missing, counts, err := walkTree(r, ostree.Root{Contents: cm.RootContents, Meta: cm.RootMeta}, present)
	switch {
	case err != nil:
		add(CheckOstreeObjects, false, "walking the commit's tree: %v", err)
	case len(missing) > 0:
		add(CheckOstreeObjects, false, "%d objects the commit's tree references are missing%s", len(missing), listSome(missing))
	default:
		add(CheckOstreeObjects, true, "%d metadata objects match their names; the commit's %d files and %d directories are all present",
			nmeta, counts[0], counts[1])
	}

	// composefs, the ostree way.
	want, hasDigest := composefsMeta(cm)
	off := strings.Contains(" "+cmdline+" ", " ostree.prepare-root.composefs=0 ")
	hasCfs := hasEntry(listing[dir], ".ostree.cfs", (*debugfs.Entry).IsRegular)
	switch {
	case !hasDigest && hasCfs:
		add(CheckOstreeComposefs, false, "the deployment has .ostree.cfs but the commit records no %s", ostree.MetaComposefsDigest)
	case !hasDigest && !off:
		add(CheckOstreeComposefs, false, "no composefs in the commit, but the command line lacks ostree.prepare-root.composefs=0 (the image's prepare-root.conf would decide)")
	case !hasDigest:
		add(CheckOstreeComposefs, true, "composefs off: no .ostree.cfs, ostree.prepare-root.composefs=0 on the command line")
	case off:
		add(CheckOstreeComposefs, false, "the commit records composefs digest %x but the command line turns composefs off", want)
	case !hasCfs:
		add(CheckOstreeComposefs, false, "the commit records composefs digest %x but the deployment has no .ostree.cfs", want)
	default:
		ok, detail := checkCfs(ctx, dfs, dir+"/.ostree.cfs", want, sizes, tmp)
		add(CheckOstreeComposefs, ok, "%s", detail)
	}
	if initrd != nil {
		if ok, detail, present := checkSignature(r, commit, raw, initrd); present {
			add(CheckOstreeSignature, ok, "%s", detail)
		}
	}
	return rows
}

// checkSignature checks a commit's ed25519 signatures against the keys in
// the initramfs; present is false for an unsigned commit booted by an
// initramfs without keys.
func checkSignature(r *ostree.Reader, commit ostree.Checksum, data, initrd []byte) (ok bool, detail string, present bool) {
	keyText, hasKey := initramfs.FindFile(initrd, ostree.RootBindingKeyPath)
	meta, err := r.ReadCommitMeta(commit)
	if errors.Is(err, ostree.ErrNotExist) {
		meta, err = nil, nil
	}
	if err != nil {
		return false, err.Error(), true
	}
	signed := false
	for _, e := range meta {
		signed = signed || e.Key == ostree.MetaSignEd25519
	}
	switch {
	case !hasKey && !signed:
		return false, "", false
	case !hasKey:
		return false, "the commit is signed (" + ostree.MetaSignEd25519 + ") but the UKI's initramfs has no /" + ostree.RootBindingKeyPath + ": nothing checks the signature at boot", true
	case !signed:
		return false, "the UKI's initramfs trusts keys in /" + ostree.RootBindingKeyPath + " but the commit has no " + ostree.MetaSignEd25519 + " signature: ostree-prepare-root refuses it", true
	}
	var keys []ed25519.PublicKey
	var names []string
	for _, line := range strings.Split(string(keyText), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		b, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(b) != ed25519.PublicKeySize {
			return false, fmt.Sprintf("/%s: %q is not a base64 ed25519 public key", ostree.RootBindingKeyPath, line), true
		}
		keys, names = append(keys, ed25519.PublicKey(b)), append(names, line)
	}
	i, err := ostree.VerifyCommit(data, meta, keys)
	if err != nil {
		return false, fmt.Sprintf("%v (keys in the initramfs: %s)", err, strings.Join(names, ", ")), true
	}
	return true, "the commit's ed25519 signature verifies with " + names[i] + ", the key the UKI's initramfs gives ostree-prepare-root", true
}

func hasEntry(ents []debugfs.Entry, name string, is func(*debugfs.Entry) bool) bool {
	for i := range ents {
		if ents[i].Name == name {
			return is(&ents[i])
		}
	}
	return false
}

// checkRef checks that the ref file at p (listed in refs) names commit.
func checkRef(ctx context.Context, dfs *debugfs.FS, refs []debugfs.Entry, p string, commit ostree.Checksum) error {
	if !hasEntry(refs, path.Base(p), (*debugfs.Entry).IsRegular) {
		return errors.New("ref ostree/1/1/0 is missing: ostree would prune the deployed commit")
	}
	var b bytes.Buffer
	if err := dfs.ReadFile(ctx, p, &b); err != nil {
		return err
	}
	if got := strings.TrimSpace(b.String()); got != commit.String() {
		return fmt.Errorf("ref ostree/1/1/0 is %q, not the deployed commit", got)
	}
	return nil
}

// checkMetaObjects checks every copied metadata object against the
// checksum in its name; it returns the bad ones and how many it checked.
func checkMetaObjects(local string, meta []string, repo string) (bad []string, n int) {
	for _, m := range meta {
		if path.Ext(m) == ".commitmeta" {
			continue // named by its commit, not its content
		}
		rel := strings.TrimPrefix(m, repo+"/")
		b, err := os.ReadFile(filepath.Join(local, filepath.FromSlash(rel)))
		name := path.Base(path.Dir(rel)) + strings.TrimSuffix(path.Base(rel), path.Ext(rel))
		if err != nil || hex.EncodeToString(sha256Of(b)) != name {
			bad = append(bad, rel)
		}
		n++
	}
	sort.Strings(bad)
	return bad, n
}

func sha256Of(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

// walkTree walks the tree from root through the copied dirtree objects
// and returns the referenced objects not present (content objects must be
// in present), and the numbers of files and directories.
func walkTree(r *ostree.Reader, root ostree.Root, present map[string]bool) ([]string, [2]int, error) {
	var missing []string
	var counts [2]int
	seen := map[ostree.Checksum]bool{}
	need := func(c ostree.Checksum, t ostree.ObjectType) {
		p := ostree.ObjectPath(c, t)
		if rel := strings.TrimPrefix(p, "objects/"); !present[rel] {
			missing = append(missing, rel)
		}
	}
	var walk func(tree, meta ostree.Checksum, depth int) error
	walk = func(tree, meta ostree.Checksum, depth int) error {
		counts[1]++
		need(meta, ostree.ObjectDirMeta)
		if depth > 256 {
			return errors.New("directory trees nested more than 256 deep")
		}
		if seen[tree] {
			// The same subtree again (identical directories): its
			// objects were checked the first time.
			return nil
		}
		seen[tree] = true
		dt, err := r.ReadDirTree(tree)
		if errors.Is(err, ostree.ErrNotExist) {
			missing = append(missing, strings.TrimPrefix(ostree.ObjectPath(tree, ostree.ObjectDirTree), "objects/"))
			return nil
		}
		if err != nil {
			return err
		}
		for _, f := range dt.Files {
			counts[0]++
			need(f.Checksum, ostree.ObjectFile)
		}
		for _, d := range dt.Dirs {
			if err := walk(d.Contents, d.Meta, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	err := walk(root.Contents, root.Meta, 0)
	sort.Strings(missing)
	return missing, counts, err
}

// composefsMeta returns the commit's ostree.composefs.digest.v0.
func composefsMeta(cm *ostree.Commit) ([]byte, bool) {
	for _, e := range cm.Metadata {
		if e.Key == ostree.MetaComposefsDigest {
			if b, ok := e.Value.AsBytes(); ok {
				return b, true
			}
		}
	}
	return nil, false
}

// checkCfs checks the deployment's composefs image p against the
// commit's recorded digest want and the repository's content objects
// (sizes, by "xx/rest.file"): every file it redirects to must be one of
// them with the same size. libostree records the objects' fs-verity
// digests in the image only when the objects have fs-verity (or
// prepare-root.conf requires it) at deploy time; the image then has
// exactly the commit's digest. Written without them (a build host without
// fs-verity), its digest differs from the commit's, and no file may carry
// a digest.
func checkCfs(ctx context.Context, dfs *debugfs.FS, p string, want []byte, sizes map[string]int64, tmp string) (bool, string) {
	if err := dfs.DumpFiles(ctx, []string{p}, tmp); err != nil {
		return false, fmt.Sprintf("reading %s: %v", p, err)
	}
	f, err := os.Open(filepath.Join(tmp, filepath.FromSlash(p)))
	if err != nil {
		return false, err.Error()
	}
	defer f.Close()
	d, size, err := fsverity.SumReader(f)
	if err != nil {
		return false, fmt.Sprintf("%s: %v", p, err)
	}
	tree, err := composefs.ReadImage(f, size)
	if err != nil {
		return false, fmt.Sprintf("%s is not a composefs image: %v", p, err)
	}
	var files, withDigest int
	var bad []string
	err = tree.Walk(func(name string, ino *composefs.Inode, link bool) error {
		if link || !ino.Mode.IsRegular() || ino.Payload == "" {
			return nil
		}
		files++
		if ino.Digest != nil {
			withDigest++
		}
		if got, ok := sizes[ino.Payload]; !ok {
			bad = append(bad, name+" → "+ino.Payload+" (missing)")
		} else if got != ino.Size {
			bad = append(bad, fmt.Sprintf("%s → %s (%d bytes, the image says %d)", name, ino.Payload, got, ino.Size))
		}
		return nil
	})
	switch {
	case err != nil:
		return false, fmt.Sprintf("reading %s: %v", p, err)
	case len(bad) > 0:
		return false, fmt.Sprintf("%d of the %d files of %s do not match a content object%s", len(bad), files, path.Base(p), listSome(bad))
	case bytes.Equal(d[:], want):
		return true, fmt.Sprintf(".ostree.cfs has the commit's fs-verity digest %x (%d files, object digests recorded)", want, files)
	case withDigest > 0:
		return false, fmt.Sprintf(".ostree.cfs has fs-verity digest %x, the commit records %x, and %d of its %d files carry object digests", d, want, withDigest, files)
	}
	return true, fmt.Sprintf(".ostree.cfs (%d files, each a content object of the right size) was written without object fs-verity digests, as libostree writes it for objects without fs-verity; the commit records %x, the digest of the image with them", files, want)
}

// listSome formats up to maxListed names for a row.
func listSome(names []string) string {
	if len(names) == 0 {
		return ""
	}
	more := ""
	if len(names) > maxListed {
		names, more = names[:maxListed], fmt.Sprintf(", and %d more", len(names)-maxListed)
	}
	return " (" + strings.Join(names, ", ") + more + ")"
}
