package main

import (
	"bytes"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/internal/initconfig"
)

func TestVerityDigest(t *testing.T) {
	// Vectors from shared/composefs/FORMAT.md section 8.2 (fsverity-utils 1.5).
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "3d248ca542a24fc62d1c43b916eae5016878e2533c88238480b26128a1f1af95"},
		{"hello", []byte("hello\n"), "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"},
		{"one block", bytes.Repeat([]byte("a"), 4096), "a2a808ddaced77f0b6b3068f47b14b5a1fb3fc43674993ab11b8e7e6f2d089e2"},
		{"block plus one", bytes.Repeat([]byte("a"), 4097), "18b155c0b6e054f3f7d22488ed15340e74dc161ce2d123e13eb685c3ce565f70"},
		{"two levels", bytes.Repeat([]byte("b"), 524289), "729cca2d983053af4604c587c5e85d3d9c06b16dea2b4762f3f844a855a640eb"},
		{"1 MiB zeros", make([]byte, 1<<20), "feb19a23e72cb1b8f935d668a09ecaad0bf7c5b9cdfa6dbba7c88a9998ed2b87"},
		{"10 MB composefs", bytes.Repeat([]byte("composefs\n"), 1000000), "7825147ec467b0cc9289db9b0c024ecccebd274f798fcede64a5869921431c7b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := verityDigest(bytes.NewReader(tt.data))
			if err != nil {
				t.Fatal(err)
			}
			if hex.EncodeToString(got[:]) != tt.want {
				t.Errorf("digest %x, want %s", got, tt.want)
			}
		})
	}
}

// makeGPT writes a 4 MiB GPT disk image with sgdisk.
func makeGPT(t *testing.T, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("sgdisk"); err != nil {
		t.Skip("sgdisk (gdisk) not installed; Makefile DEB_PACKAGES has it")
	}
	p := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(p, make([]byte, 4<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("sgdisk", append(args, p)...).CombinedOutput(); err != nil {
		t.Fatalf("sgdisk: %v\n%s", err, out)
	}
	return p
}

func TestReadGPT(t *testing.T) {
	disk := makeGPT(t, "-o", "-n", "1:2048:+1M", "-t", "1:ef00", "-c", "1:ESP",
		"-n", "3:0:+1M", "-t", "3:4f68bce3-e8cd-4db1-96e7-fbcaf984b709", "-c", "3:root")
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	parts, err := readGPT(f)
	if err != nil {
		t.Fatal(err)
	}
	want := []gptPartition{
		{1, "c12a7328-f81f-11d2-ba4b-00a0c93ec93b", "ESP"},
		{3, rootType("amd64"), "root"},
	}
	if !reflect.DeepEqual(parts, want) {
		t.Errorf("partitions %+v, want %+v", parts, want)
	}

	data, _ := os.ReadFile(disk)
	corrupt := append([]byte{}, data...)
	corrupt[2*512+60] ^= 1 // a partition name byte: entry array CRC
	if _, err := readGPT(bytes.NewReader(corrupt)); err == nil || !strings.Contains(err.Error(), "entry array CRC") {
		t.Errorf("corrupt entries: err = %v", err)
	}
	corrupt = append([]byte{}, data...)
	corrupt[512+40] ^= 1 // FirstUsableLBA: header CRC
	if _, err := readGPT(bytes.NewReader(corrupt)); err == nil || !strings.Contains(err.Error(), "header CRC") {
		t.Errorf("corrupt header: err = %v", err)
	}
	if _, err := readGPT(bytes.NewReader(make([]byte, 8192))); err != errNoGPT {
		t.Errorf("blank disk: err = %v", err)
	}
}

func FuzzReadGPT(f *testing.F) {
	f.Add(make([]byte, 1024))
	f.Fuzz(func(t *testing.T, data []byte) {
		readGPT(bytes.NewReader(data))
	})
}

const hexA = "9c76eecc7b76fcb46199cb27b90cf59a660e10575bb0412128905129d5b1c2aa"

func TestResolveOptions(t *testing.T) {
	base := initconfig.Config{Version: 1, Composefs: true, Verity: "enable", RootLabel: "root"}
	plain := base
	plain.Composefs = false
	tests := []struct {
		name    string
		cfg     initconfig.Config
		cmdline string
		check   func(o options) bool
		wantErr string
	}{
		{"digest", base, "composefs=" + hexA, func(o options) bool {
			return o.digest.Hex == hexA && o.verity == "enable" && o.rootWait == 10*time.Second
		}, ""},
		{"self-describing", base, "composefs.digest=v1-sha256-12:" + hexA, func(o options) bool { return o.digest.Hex == hexA }, ""},
		{"verity raised", base, "composefs=" + hexA + " cfs.verity=require", func(o options) bool { return o.verity == "require" }, ""},
		{"verity not lowered", base, "composefs=" + hexA + " cfs.verity=none", func(o options) bool { return o.verity == "enable" && len(o.notes) == 1 }, ""},
		{"rootwait", base, "composefs=" + hexA + " cfs.rootwait=3", func(o options) bool { return o.rootWait == 3*time.Second }, ""},
		{"init", base, "composefs=" + hexA + " init=/bin/sh", func(o options) bool { return o.init == "/bin/sh" }, ""},
		{"plain ignores digest", plain, "composefs=" + hexA, func(o options) bool { return !o.composefs && len(o.notes) == 1 }, ""},
		{"plain", plain, "quiet", func(o options) bool { return !o.composefs }, ""},
		{"no digest", base, "quiet", nil, "no composefs=<digest>"},
		{"bad digest", base, "composefs=abc", nil, "malformed composefs digest"},
		{"sha512", base, "composefs.digest=v1-sha512-12:" + strings.Repeat("ab", 64), nil, "only sha256"},
		{"bad verity", base, "composefs=" + hexA + " cfs.verity=maybe", nil, "cfs.verity=maybe"},
		{"bad rootwait", base, "composefs=" + hexA + " cfs.rootwait=x", nil, "cfs.rootwait=x"},
		{"erofs loop", base, "composefs=" + hexA + " cfs.erofs=loop", func(o options) bool { return o.erofsLoop }, ""},
		{"bad erofs", base, "composefs=" + hexA + " cfs.erofs=fuse", nil, "cfs.erofs=fuse"},
		{"relative init", base, "composefs=" + hexA + " init=sbin/init", nil, "absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := resolveOptions(tt.cfg, cmdline.Parse(tt.cmdline))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(o) {
				t.Errorf("options %+v", o)
			}
		})
	}
}

func TestPlans(t *testing.T) {
	const img = "/run/cfs/sysroot/composefs/images/" + hexA
	d := "/run/cfs/sysroot/state/deploy/" + hexA
	obj := "/run/cfs/sysroot/composefs/objects"
	tests := []struct {
		name string
		plan []step
		want []string
	}{
		{"composefs require", composefsPlan(img, hexA, "require", false), []string{
			"mkdir /run/cfs/erofs",
			"image " + img + " /run/cfs/erofs erofs",
			"mkdir /sysroot",
			"mount composefs /sysroot overlay ro lowerdir=/run/cfs/erofs::" + obj + ",metacopy=on,redirect_dir=on,verity=require",
			"mkdir " + d + "/etc",
			"mkdir " + d + "/etc.work",
			"mount overlay /sysroot/etc overlay rw lowerdir=/run/cfs/erofs/etc::" + obj + ",upperdir=" + d + "/etc,workdir=" + d + "/etc.work,metacopy=on,redirect_dir=on,verity=require",
			"mkdir /run/cfs/sysroot/state/os/default/var",
			"mount /run/cfs/sysroot/state/os/default/var /sysroot/var  bind ",
		}},
		{"composefs none", composefsPlan(img, hexA, "none", false)[:4], []string{
			"mkdir /run/cfs/erofs",
			"image " + img + " /run/cfs/erofs erofs",
			"mkdir /sysroot",
			"mount composefs /sysroot overlay ro lowerdir=/run/cfs/erofs::" + obj + ",metacopy=on,redirect_dir=on",
		}},
		{"composefs enable", composefsPlan(img, hexA, "enable", false)[3:4], []string{
			"mount composefs /sysroot overlay ro lowerdir=/run/cfs/erofs::" + obj + ",metacopy=on,redirect_dir=on,verity=on",
		}},
		{"plain", plainPlan(), []string{
			"mkdir /sysroot",
			"mount /run/cfs/sysroot/state/deploy/plain/root /sysroot  bind ",
			"mount  /sysroot  bind,remount,ro ",
			"mount /run/cfs/sysroot/state/deploy/plain/root/etc /sysroot/etc  bind ",
			"mkdir /run/cfs/sysroot/state/os/default/var",
			"mount /run/cfs/sysroot/state/os/default/var /sysroot/var  bind ",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, s := range tt.plan {
				switch s.op {
				case opMkdir:
					got = append(got, "mkdir "+s.target)
				case opMountImage:
					got = append(got, "image "+s.source+" "+s.target+" "+s.fstype)
				case opMount:
					got = append(got, "mount "+s.source+" "+s.target+" "+s.fstype+" "+flagString(s.flags)+" "+s.data)
				}
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// flagString renders mount flags for test expectations.
func flagString(f uintptr) string {
	var s []string
	for _, x := range []struct {
		f    uintptr
		name string
	}{{unix.MS_BIND, "bind"}, {unix.MS_REMOUNT, "remount"}, {unix.MS_MOVE, "move"}, {unix.MS_RDONLY, "ro"}} {
		if f&x.f != 0 {
			s = append(s, x.name)
			f &^= x.f
		}
	}
	if len(s) == 0 && f == 0 {
		return "rw"
	}
	if f != 0 {
		s = append(s, "other")
	}
	return strings.Join(s, ",")
}

func TestParseUevent(t *testing.T) {
	got := parseUevent("MAJOR=253\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nPARTN=2\nPARTNAME=root\n")
	if got["DEVNAME"] != "vda2" || got["PARTNAME"] != "root" || got["PARTN"] != "2" {
		t.Errorf("parseUevent = %v", got)
	}
}
