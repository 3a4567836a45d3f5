package sysroot

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/ostree"
)

// kernel is what libostree's get_kernel_from_tree_usrlib_modules finds in
// usr/lib/modules/KVER: source names relative to that directory ("" when
// absent) and the boot checksum.
type kernel struct {
	kver       string
	initramfs  string // "initramfs.img" or "initramfs"
	devicetree bool   // a devicetree file
	hmac       bool   // .vmlinuz.hmac
	bootcsum   string
}

// findKernel finds the kernel of the deployment (root) in
// usr/lib/modules/KVER/vmlinuz and computes the boot checksum: SHA-256
// over the kernel, the initramfs and the device tree.
func findKernel(root *os.Root) (*kernel, error) {
	for _, legacy := range []string{"usr/lib/ostree-boot", "boot"} {
		ents, err := fs.ReadDir(root.FS(), legacy)
		if err != nil {
			continue
		}
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), "vmlinuz") || strings.HasPrefix(e.Name(), "vmlinux") {
				return nil, fmt.Errorf("sysroot: %w: kernel in the legacy layout /%s", ErrUnsupported, legacy)
			}
		}
	}
	ents, err := fs.ReadDir(root.FS(), "usr/lib/modules")
	if err != nil {
		return nil, fmt.Errorf("sysroot: no kernel: %w", err)
	}
	var kvers []string
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		if fi, err := root.Stat("usr/lib/modules/" + e.Name() + "/vmlinuz"); err == nil && fi.Mode().IsRegular() {
			kvers = append(kvers, e.Name())
		}
	}
	switch len(kvers) {
	case 0:
		return nil, errors.New("sysroot: no kernel in /usr/lib/modules/*/vmlinuz")
	case 1:
	default:
		return nil, fmt.Errorf("sysroot: %w: several kernels %v (ostree takes the first in directory order)", ErrUnsupported, kvers)
	}
	k := &kernel{kver: kvers[0]}
	dir := "usr/lib/modules/" + k.kver + "/"
	for _, unsupported := range []string{"aboot.img", "dtb"} {
		if _, err := root.Stat(dir + unsupported); err == nil {
			return nil, fmt.Errorf("sysroot: %w: %s%s", ErrUnsupported, dir, unsupported)
		}
	}
	h := sha256.New()
	hashFile := func(name string) (bool, error) {
		f, err := root.Open(dir + name)
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		} else if err != nil {
			return false, fmt.Errorf("sysroot: %w", err)
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return false, fmt.Errorf("sysroot: reading %s%s: %w", dir, name, err)
		}
		return true, nil
	}
	if _, err := hashFile("vmlinuz"); err != nil {
		return nil, err
	}
	for _, name := range []string{"initramfs.img", "initramfs"} {
		ok, err := hashFile(name)
		if err != nil {
			return nil, err
		}
		if ok {
			k.initramfs = name
			break
		}
	}
	if k.devicetree, err = hashFile("devicetree"); err != nil {
		return nil, err
	}
	if _, err := root.Stat(dir + ".vmlinuz.hmac"); err == nil {
		k.hmac = true
	}
	k.bootcsum = hex.EncodeToString(h.Sum(nil))
	return k, nil
}

// bootDir is the kernel's directory in /boot, relative to /boot.
func bootDir(dep *Deployment) string { return "ostree/" + dep.Stateroot + "-" + dep.BootCsum }

// installKernel places the kernel, initramfs, device tree and HMAC file
// in boot/ostree/STATEROOT-BOOTCSUM (install_into_boot).
func (d *deployer) installKernel(k *kernel, dep *Deployment) error {
	dst := "boot/" + bootDir(dep)
	for _, p := range []string{"boot/ostree", dst} {
		if err := mkdir(d.path(p), dirMode); err != nil {
			return err
		}
	}
	src := dep.Dir + "/usr/lib/modules/" + k.kver + "/"
	files := [][2]string{{"vmlinuz", "vmlinuz-" + k.kver}}
	if k.initramfs != "" {
		files = append(files, [2]string{k.initramfs, "initramfs-" + k.kver + ".img"})
	}
	if k.devicetree {
		files = append(files, [2]string{"devicetree", "devicetree-" + k.kver})
	}
	if k.hmac {
		files = append(files, [2]string{".vmlinuz.hmac", ".vmlinuz-" + k.kver + ".hmac"})
	}
	for _, f := range files {
		if err := installFile(d.path(src+f[0]), d.path(dst+"/"+f[1])); err != nil {
			return err
		}
	}
	return nil
}

// installFile hard-links src to dst, or copies it (content, owner and
// mode, no attributes) when they are on different file systems.
func installFile(src, dst string) error {
	err := unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, dst, 0)
	if err == nil {
		return nil
	}
	if err != unix.EXDEV && err != unix.EMLINK {
		return fmt.Errorf("sysroot: linking %s: %w", dst, err)
	}
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("sysroot: copying %s: %w", dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	if err := os.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
		return fmt.Errorf("sysroot: %w", err)
	}
	return nil
}

// entryTitle returns the BLS title: os-release's PRETTY_NAME (else ID)
// from usr/lib/os-release (else etc/os-release), the commit's version
// when the name does not contain it, and "(ostree:0)".
func entryTitle(root *os.Root, cm *ostree.Commit) (string, error) {
	name := "usr/lib/os-release"
	if _, err := root.Stat(name); err != nil {
		name = "etc/os-release"
	}
	b, err := fs.ReadFile(root.FS(), name)
	if err != nil {
		return "", fmt.Errorf("sysroot: reading /%s: %w", name, err)
	}
	vals := parseOSRelease(string(b))
	title, ok := vals["PRETTY_NAME"]
	if !ok {
		if title, ok = vals["ID"]; !ok {
			return "", errors.New("sysroot: no PRETTY_NAME or ID in os-release")
		}
	}
	for _, e := range cm.Metadata {
		if e.Key != ostree.MetaVersion {
			continue
		}
		if v, ok := e.Value.AsString(); ok && v != "" && !strings.Contains(title, v) {
			title += " " + v
		}
	}
	return title + " (ostree:0)", nil
}

// parseOSRelease parses os-release as libostree does: KEY=VALUE lines,
// "#" comments, values shell-unquoted; lines that do not parse are
// skipped; a later key wins.
func parseOSRelease(s string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if u, ok := shellUnquote(v); ok {
			m[k] = u
		}
	}
	return m
}

// shellUnquote removes shell quoting as GLib's g_shell_unquote: single
// quotes are literal, double quotes allow \ before $ ` " \ and newline,
// and outside quotes a backslash quotes the next character (a
// backslash-newline disappears).
func shellUnquote(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return "", false
			}
			b.WriteString(s[i+1 : i+1+j])
			i += j + 1
		case '"':
			i++
			for ; ; i++ {
				if i >= len(s) {
					return "", false
				}
				if s[i] == '"' {
					break
				}
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("$`\"\\\n", s[i+1]) >= 0 {
					i++
					if s[i] == '\n' {
						continue
					}
				}
				b.WriteByte(s[i])
			}
		case '\\':
			if i+1 >= len(s) {
				b.WriteByte(c)
				continue
			}
			i++
			if s[i] != '\n' {
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), true
}

// bootEntry returns the BLS entry as libostree writes it: title,
// version, options, devicetree, linux and initrd in this order, then the
// keys it sets without knowing them (aboot and abootcfg, always set) in
// the iteration order of its hash table of keys, which depends on the
// keys and their insertion order (see [strHashOrder]). withOptions says
// whether the deployment started with kernel arguments ("options" then
// is the first key); bootPrefix puts "/boot" before the paths of the
// kernel, initramfs and device tree (sysroot.bootprefix).
func bootEntry(title string, k *kernel, dep *Deployment, withOptions, bootPrefix bool) string {
	bd := "/" + bootDir(dep) + "/"
	if bootPrefix {
		bd = "/boot" + bd
	}
	vals := map[string]string{
		"title":    title,
		"version":  "1",
		"options":  dep.Options,
		"linux":    bd + "vmlinuz-" + k.kver,
		"aboot":    "/" + dep.Dir + "/usr/lib/ostree-boot/aboot.img",
		"abootcfg": "/" + dep.Dir + "/usr/lib/ostree-boot/aboot.cfg",
	}
	var keys []string
	if withOptions {
		keys = append(keys, "options")
	}
	keys = append(keys, "title", "version", "linux")
	if k.initramfs != "" {
		vals["initrd"] = bd + "initramfs-" + k.kver + ".img"
		keys = append(keys, "initrd")
	}
	keys = append(keys, "aboot", "abootcfg")
	if k.devicetree {
		vals["devicetree"] = bd + "devicetree-" + k.kver
		keys = append(keys, "devicetree")
	}
	keys = append(keys, "options")
	known := []string{"title", "version", "options", "devicetree", "linux", "initrd"}
	var b strings.Builder
	for _, key := range known {
		if v, ok := vals[key]; ok {
			b.WriteString(key + " " + v + "\n")
		}
	}
	for _, key := range strHashOrder(keys) {
		if !slices.Contains(known, key) {
			b.WriteString(key + " " + vals[key] + "\n")
		}
	}
	return b.String()
}
