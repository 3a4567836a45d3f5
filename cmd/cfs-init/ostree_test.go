package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

const testBootCsum = "b00c5b00c5b00c5b00c5b00c5b00c5b00c5b00c5b00c5b00c5b00c5b00c5b00c"

// ostreeEnv turns the fake machine into an ostree sysroot: a repository
// with one commit (carrying the composefs digest of .ostree.cfs when
// composefs is on), its deployment debian/COMMIT.0 with etc, usr, sysroot
// and an init, the stateroot's var, and the boot links ostree= follows.
func ostreeEnv(t *testing.T, composefs bool) (*env, ostree.Checksum) {
	t.Helper()
	e := newEnv(t)
	img := []byte("pretend this is the deployment's .ostree.cfs\n")
	d, _ := verityDigest(bytes.NewReader(img))
	e.digest = hex.EncodeToString(d[:])
	var meta []ostree.MetaEntry
	if composefs {
		meta = append(meta, ostree.ComposefsDigestEntry(d))
	}
	commit := writeCommit(t, e.part, meta)
	dep := filepath.Join(e.part, "ostree/deploy/debian/deploy", commit.String()+".0")
	if composefs {
		write(t, filepath.Join(dep, ostreeComposefs), img, 0o644)
	}
	write(t, filepath.Join(dep, "etc/hostname"), []byte("ostree"), 0o644)
	write(t, filepath.Join(dep, "usr/lib/systemd/systemd"), []byte("#!"), 0o755)
	write(t, filepath.Join(dep, "sbin/init"), []byte("#!"), 0o755)
	write(t, filepath.Join(e.part, ostreeObjectsDir, "ab", strings.Repeat("c", 62)+".file"), []byte("content object"), 0o644)
	write(t, filepath.Join(e.part, ostreeRepoDir, "config"), []byte("[core]\nrepo_version=1\nmode=bare\n"), 0o644)
	for _, p := range []string{filepath.Join(dep, "sysroot"), filepath.Join(e.part, "ostree/deploy/debian/var")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link(t, "boot.1.1", filepath.Join(e.part, "ostree/boot.1"))
	link(t, "loader.1", filepath.Join(e.part, "boot/loader"))
	if err := os.MkdirAll(filepath.Join(dep, "boot"), 0o755); err != nil {
		t.Fatal(err)
	}
	link(t, "../../../deploy/debian/deploy/"+commit.String()+".0", filepath.Join(e.part, "ostree/boot.1.1/debian", testBootCsum, "0"))
	e.cfg.Ostree = true
	e.cfg.Composefs = composefs
	e.cmdline = "console=ttyS0 root=LABEL=root rw ostree=/ostree/boot.1/debian/" + testBootCsum + "/0"
	if composefs {
		e.cmdline += " composefs=" + e.digest
	}
	return e, commit
}

// writeCommit stores a commit object with metadata meta in the
// repository on part and returns its checksum.
func writeCommit(t *testing.T, part string, meta []ostree.MetaEntry) ostree.Checksum {
	t.Helper()
	c := &ostree.Commit{Metadata: meta, Subject: "test", Timestamp: time.Unix(1700000000, 0),
		RootContents: ostree.Checksum{1}, RootMeta: ostree.Checksum{2}}
	data, err := c.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sum := ostree.Checksum(sha256.Sum256(data))
	write(t, filepath.Join(part, "ostree/repo", ostree.ObjectPath(sum, ostree.ObjectCommit)), data, 0o644)
	return sum
}

func link(t *testing.T, target, name string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, name); err != nil {
		t.Fatal(err)
	}
}

// readBooted parses the fake machine's /run/ostree-booted.
func readBooted(t *testing.T, e *env) map[string]ostree.Variant {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(e.root, ostreeBootedPath))
	if err != nil {
		t.Fatal(err)
	}
	entries, err := ostree.ParseDict(data)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]ostree.Variant{}
	for _, en := range entries {
		m[en.Key] = en.Value
	}
	return m
}

// TestBootOstree boots the deployment ostree= names, with composefs (the
// .ostree.cfs over the repository's objects) and without (the deployment
// directory bound), and checks the mounts, the records for the agent and
// /run/ostree-booted, whose backing device and inode are the deployment
// directory's.
func TestBootOstree(t *testing.T) {
	for _, tt := range []struct {
		name      string
		composefs bool
		verity    string
		mounts    []string
		booted    map[string]bool
	}{
		{"composefs", true, "none", []string{
			"mount-image /run/cfs/DIGEST.erofs /run/cfs/erofs erofs",
			"mount composefs /sysroot overlay ro lowerdir=/run/cfs/erofs::/run/cfs/sysroot/ostree/repo/objects,metacopy=on,redirect_dir=on",
			"mount /run/cfs/sysroot/boot /sysroot/boot  bind ",
			"mount /run/cfs/sysroot/DEPLOY/etc /sysroot/etc  bind ",
			"mount /run/cfs/sysroot/ostree/deploy/debian/var /sysroot/var  bind ",
			"mount /run/cfs/sysroot /sysroot/sysroot  move ",
			"mount  /sysroot/sysroot  bind,remount,ro ",
		}, map[string]bool{bootedKeyComposefs: true, bootedKeyComposefsVerity: false, bootedKeyRootTransient: false, bootedKeySysrootRO: true}},
		{"composefs verity require", true, "require", []string{
			"enable-verity /run/cfs/sysroot/ostree/repo/objects/ab/" + strings.Repeat("c", 62) + ".file",
			"enable-verity /run/cfs/sysroot/DEPLOY/.ostree.cfs",
			"mount-image /run/cfs/sysroot/DEPLOY/.ostree.cfs /run/cfs/erofs erofs",
			"mount composefs /sysroot overlay ro lowerdir=/run/cfs/erofs::/run/cfs/sysroot/ostree/repo/objects,metacopy=on,redirect_dir=on,verity=require",
		}, map[string]bool{bootedKeyComposefs: true, bootedKeyComposefsVerity: true, bootedKeyRootTransient: false, bootedKeySysrootRO: true}},
		{"plain", false, "none", []string{
			"mount /run/cfs/sysroot/DEPLOY /sysroot  bind ",
			"mount /sysroot/usr /sysroot/usr  bind ",
			"mount  /sysroot/usr  bind,remount,ro ",
			"mount /run/cfs/sysroot/boot /sysroot/boot  bind ",
			"mount /run/cfs/sysroot/DEPLOY/etc /sysroot/etc  bind ",
			"mount /run/cfs/sysroot/ostree/deploy/debian/var /sysroot/var  bind ",
			"mount /run/cfs/sysroot /sysroot/sysroot  move ",
		}, map[string]bool{bootedKeyRootTransient: false, bootedKeySysrootRO: true}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, commit := ostreeEnv(t, tt.composefs)
			e.cfg.Verity = tt.verity
			deployRel := "ostree/deploy/debian/deploy/" + commit.String() + ".0"
			// The overlay's root is the deployment tree in the fake.
			e.sys.image = filepath.Join(e.part, deployRel)
			if err := e.run(t); err != nil {
				t.Fatalf("boot: %v\n%s", err, e.out.String())
			}
			calls := e.calls()
			for _, m := range tt.mounts {
				m = strings.NewReplacer("DIGEST", e.digest, "DEPLOY", deployRel).Replace(m)
				if !strings.Contains(calls, m) {
					t.Errorf("calls lack %q:\n%s", m, calls)
				}
			}
			if tt.verity == "none" && !strings.Contains(calls, "/sysroot/boot  bind") {
				t.Errorf("/boot not bound:\n%s", calls)
			}
			if !strings.HasSuffix(calls, "exec /sbin/init /sbin/init single") {
				t.Errorf("no exec of the init:\n%s", calls)
			}
			booted := readBooted(t, e)
			fi, err := os.Stat(filepath.Join(e.part, deployRel))
			if err != nil {
				t.Fatal(err)
			}
			st := fi.Sys().(*syscall.Stat_t)
			dev, ino, ok := booted[bootedKeyBacking].AsUint64Pair()
			if !ok || dev != uint64(st.Dev) || ino != st.Ino {
				t.Errorf("%s = (%d, %d) %v, want the deployment directory's (%d, %d)", bootedKeyBacking, dev, ino, ok, st.Dev, st.Ino)
			}
			if len(booted) != len(tt.booted)+1 {
				t.Errorf("/run/ostree-booted has %d keys, want %d", len(booted), len(tt.booted)+1)
			}
			for k, want := range tt.booted {
				if got, ok := booted[k].AsBool(); !ok || got != want {
					t.Errorf("%s = %v (%v), want %v", k, got, ok, want)
				}
			}
			rec, err := os.ReadFile(filepath.Join(e.root, recordedDigest))
			if tt.composefs != (err == nil) || (tt.composefs && string(rec) != e.digest+"\n") {
				t.Errorf("recorded digest %q, %v (composefs %v)", rec, err, tt.composefs)
			}
			if !strings.Contains(e.out.String(), "ostree deployment debian "+commit.String()+".0") {
				t.Errorf("console lacks the deployment:\n%s", e.out.String())
			}
		})
	}
}

// TestBootOstreeRefusals: anything that does not lead to the deployment
// the command line pins with a verified composefs image stops the boot
// with a reason.
func TestBootOstreeRefusals(t *testing.T) {
	for _, tt := range []struct {
		name   string
		change func(t *testing.T, e *env, commit ostree.Checksum)
		want   string
	}{
		{"no ostree= argument", func(t *testing.T, e *env, _ ostree.Checksum) {
			e.cmdline = "console=ttyS0 composefs=" + e.digest
		}, "has no ostree=/ostree/boot.N/STATEROOT/BOOTCSUM/SERIAL"},
		{"absolute symlink out of the partition", func(t *testing.T, e *env, _ ostree.Checksum) {
			p := filepath.Join(e.part, "ostree/boot.1.1/debian", testBootCsum, "0")
			os.Remove(p)
			link(t, "/etc", p)
		}, "symbolic link to the absolute path /etc"},
		{"dot-dot above the partition", func(t *testing.T, e *env, _ ostree.Checksum) {
			p := filepath.Join(e.part, "ostree/boot.1.1/debian", testBootCsum, "0")
			os.Remove(p)
			link(t, "../../../../../../etc", p)
		}, "leads above the root partition"},
		{"symlink loop", func(t *testing.T, e *env, _ ostree.Checksum) {
			p := filepath.Join(e.part, "ostree/boot.1.1/debian", testBootCsum, "0")
			os.Remove(p)
			link(t, "0", p)
		}, "more than 40 symbolic links"},
		{"not a deployment directory", func(t *testing.T, e *env, _ ostree.Checksum) {
			p := filepath.Join(e.part, "ostree/boot.1.1/debian", testBootCsum, "0")
			os.Remove(p)
			link(t, "../../../deploy/debian/var", p)
		}, "not a deployment directory"},
		{"missing boot link", func(t *testing.T, e *env, _ ostree.Checksum) {
			os.Remove(filepath.Join(e.part, "ostree/boot.1"))
		}, "/ostree/boot.1: "},
		{"digest mismatch with the command line", func(t *testing.T, e *env, _ ostree.Checksum) {
			e.cmdline = strings.Replace(e.cmdline, "composefs="+e.digest, "composefs="+strings.Repeat("ab", 32), 1)
		}, "composefs digest mismatch: commit"},
		{"tampered .ostree.cfs", func(t *testing.T, e *env, c ostree.Checksum) {
			write(t, filepath.Join(e.part, "ostree/deploy/debian/deploy", c.String()+".0", ostreeComposefs), []byte("evil"), 0o644)
		}, "composefs image digest mismatch"},
		{"missing .ostree.cfs", func(t *testing.T, e *env, c ostree.Checksum) {
			os.Remove(filepath.Join(e.part, "ostree/deploy/debian/deploy", c.String()+".0", ostreeComposefs))
		}, "has no composefs image .ostree.cfs"},
		{"tampered commit", func(t *testing.T, e *env, c ostree.Checksum) {
			p := filepath.Join(e.part, "ostree/repo", ostree.ObjectPath(c, ostree.ObjectCommit))
			data, _ := os.ReadFile(p)
			data[len(data)-1] ^= 1
			write(t, p, data, 0o644)
		}, "checksum"},
		{"commit without a composefs digest", func(t *testing.T, e *env, c ostree.Checksum) {
			other := writeCommit(t, e.part, nil)
			dep := filepath.Join(e.part, "ostree/deploy/debian/deploy")
			if err := os.Rename(filepath.Join(dep, c.String()+".0"), filepath.Join(dep, other.String()+".0")); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(e.part, "ostree/boot.1.1/debian", testBootCsum, "0")
			os.Remove(p)
			link(t, "../../../deploy/debian/deploy/"+other.String()+".0", p)
		}, "the commit has no composefs digest"},
		{"no composefs= on the command line", func(t *testing.T, e *env, _ ostree.Checksum) {
			e.cmdline = strings.Replace(e.cmdline, " composefs="+e.digest, "", 1)
		}, "no composefs=<digest>"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, commit := ostreeEnv(t, true)
			tt.change(t, e, commit)
			err := e.run(t)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("boot error %v, want %q\n%s", err, tt.want, e.out.String())
			}
			if strings.Contains(e.calls(), "overlay") || strings.Contains(e.calls(), "exec ") {
				t.Errorf("mounted or executed despite the refusal:\n%s", e.calls())
			}
		})
	}
}

// TestResolveInside follows the chain of relative links inside the root.
func TestResolveInside(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a/b/c/file"), nil, 0o644)
	link(t, "b", filepath.Join(root, "a/lb"))
	link(t, "../a/lb/c", filepath.Join(root, "x/lc"))
	for _, tt := range []struct{ in, want, err string }{
		{"/a/b/c", "a/b/c", ""},
		{"/a/lb/c/", "a/b/c", ""},
		{"/x/lc/file", "a/b/c/file", ""},
		{"//a/./b/../b/c", "a/b/c", ""},
		{"/", "", ""},
		{"a/b", "", "not an absolute path"},
		{"/a/b/c/file/x", "", "is not a directory"},
		{"/a/nope", "", "no such file"},
		{"/..", "", "leads above"},
	} {
		got, err := resolveInside(root, tt.in)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("resolveInside(%q) = %q, %v; want error %q", tt.in, got, err, tt.err)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolveInside(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

// TestParseDeployName accepts COMMIT.SERIAL only.
func TestParseDeployName(t *testing.T) {
	sum := strings.Repeat("0a", 32)
	for _, tt := range []struct {
		in     string
		serial int
		ok     bool
	}{
		{sum + ".0", 0, true},
		{sum + ".12", 12, true},
		{sum, 0, false},
		{sum + ".", 0, false},
		{sum + ".-1", 0, false},
		{strings.ToUpper(sum) + ".0", 0, false},
		{sum[:62] + ".0", 0, false},
		{sum + ".0.origin", 0, false},
	} {
		c, n, ok := parseDeployName(tt.in)
		if ok != tt.ok || (ok && (n != tt.serial || c.String() != sum)) {
			t.Errorf("parseDeployName(%q) = %s, %d, %v; want serial %d, %v", tt.in, c, n, ok, tt.serial, tt.ok)
		}
	}
}

// TestOstreeBootOnRoot binds /boot only as prepare-root does: the
// partition's boot/loader is a symbolic link and the deployment has a
// boot directory.
func TestOstreeBootOnRoot(t *testing.T) {
	for _, tt := range []struct {
		name          string
		loaderSymlink bool
		loaderDir     bool
		deployBoot    bool
		want          bool
	}{
		{"ostree boot on the root partition", true, false, true, true},
		{"boot/loader a directory", false, true, true, false},
		{"no boot/loader", false, false, true, false},
		{"no boot directory in the deployment", true, false, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, commit := ostreeEnv(t, false)
			os.Remove(filepath.Join(e.part, "boot/loader"))
			if tt.loaderSymlink {
				link(t, "loader.1", filepath.Join(e.part, "boot/loader"))
			}
			if tt.loaderDir {
				if err := os.MkdirAll(filepath.Join(e.part, "boot/loader"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			d := ostreeDeployment{dir: "ostree/deploy/debian/deploy/" + commit.String() + ".0"}
			if !tt.deployBoot {
				os.Remove(filepath.Join(e.part, d.dir, "boot"))
			}
			// The booter reads the partition at partMount.
			link(t, e.part, filepath.Join(e.root, partMount))
			b := newBooter(e.sys, e.root, &e.out)
			if got := b.ostreeBootOnRoot(d); got != tt.want {
				t.Errorf("ostreeBootOnRoot = %v, want %v", got, tt.want)
			}
		})
	}
}
