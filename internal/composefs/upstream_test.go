//go:build mkcomposefs_assets

package composefs

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mkcomposefs's own test suite (containers/composefs tests/) runs its
// assets in two ways, and TestMkcomposefsAssets runs them the same way
// through ReadDumpfileOptions and WriteImage:
//
//   - test-checksums.sh: each asset (gzip-compressed when named .gz) goes
//     through `mkcomposefs --from-file`, with --min-version and
//     --max-version set to the contents of ASSET.version when that file
//     exists, and CFS_PARSE_STRICT=1 except for the three assets in
//     upstreamNonStrict; the image's SHA-256 must equal ASSET.sha256, and
//     re-making the image from its own dump must give the same bytes.
//     Assets that are absent are passed over, as upstream does.
//   - test-should-fail.sh: each should-fail asset, parsed without
//     CFS_PARSE_STRICT and default versions, must be refused.
//
// The assets are not part of this repository (they are upstream's test
// data; see testdata/README.md). The test reads them from the directory
// $CFS_COMPOSEFS_ASSETS, or else from shared/composefs/mkcomposefs-assets
// in the nearest directory above this one that has it (CI's copy of
// shared/ sits beside the checkout).

// upstreamAssets is tests/meson.build's test_assets list (containers/composefs
// commit 6fc335cb8e65, release 1.0.8 + 7 commits).
var upstreamAssets = []string{
	"honggfuzz-write-inode-data.dump", // listed upstream but not in its tree (only the .sha256 is)
	"config.dump.gz",
	"config-with-hard-link.dump.gz",
	"special.dump",
	"longlink.dump",
	"bigfile.dump",
	"bigfile-xattr.dump",
	"special_v1.dump",
	"honggfuzz-long-symlink.dump",
	"honggfuzz-longlink-unterminated.dump",
	"honggfuzz-bigfile-with-acl.dump",
	"no-newline.dump",
	"honggfuzz-chardev-nonzero-size.dump",
	"cs9-x86_64-developer.dump.gz",
	"cs9-x86_64-minimal.dump.gz",
	"f36-x86_64-silverblue.dump.gz",
}

// upstreamNonStrict are the assets test-checksums.sh parses without
// CFS_PARSE_STRICT.
var upstreamNonStrict = map[string]bool{
	"no-newline.dump":                      true,
	"longlink.dump":                        true,
	"honggfuzz-longlink-unterminated.dump": true,
}

// upstreamShouldFail is meson.build's test_assets_should_fail list, each
// with the reason we refuse it (upstream checks only that mkcomposefs
// fails; the reason pins that we fail for the fault the asset is about).
var upstreamShouldFail = []struct {
	name, want string
}{
	{"should-fail-long-link.dump", "symlink target must be 1 to 4095 bytes"},
	{"should-fail-empty-xattr-key.dump", `name ""`},
	{"should-fail-long-xattr-key.dump", "invalid extended attribute: name"},
	{"should-fail-long-xattr-value.dump", `MODE: invalid mode "644"`}, // upstream's asset has no file type: mkcomposefs refuses the mode too
	{"should-fail-honggfuzz-long-xattr.dump", "extended attributes need 34493 bytes"},
	{"should-fail-too-big.dump", "file size 9500000000000000 out of range"},
	{"should-fail-no-ftype.dump", `MODE: invalid mode "0"`},
	{"should-fail-empty-name.dump", "empty path component"},
	{"should-fail-empty-link-name.dump", "symlink without a target"},
	{"should-fail-dot-name.dump", ". and .. are not allowed"},
	{"should-fail-dotdot-name.dump", ". and .. are not allowed"},
	{"should-fail-dir-hardlink.dump", "directories cannot be hard links"},
	{"should-fail-self-hardlink.dump", "links to itself"},
	{"should-fail-big-inline.dump", "inline content of 5004 bytes exceeds 5000"},
}

// upstreamAssetDir finds the assets, or fails with the way to get them.
func upstreamAssetDir(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("CFS_COMPOSEFS_ASSETS"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "special.dump")); err != nil {
			t.Fatalf("CFS_COMPOSEFS_ASSETS=%s is not a copy of containers/composefs tests/assets: %v", dir, err)
		}
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for d := wd; ; d = filepath.Dir(d) {
		cand := filepath.Join(d, "shared", "composefs", "mkcomposefs-assets")
		if _, err := os.Stat(filepath.Join(cand, "special.dump")); err == nil {
			return cand
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	msg := "mkcomposefs test assets not found: set CFS_COMPOSEFS_ASSETS to a copy of " +
		"containers/composefs tests/assets, or provide shared/composefs/mkcomposefs-assets " +
		"(see internal/composefs/testdata/README.md)"
	t.Fatal(msg) // this file is built only with the assets (make test-mkcomposefs)
	return ""
}

// readAsset reads an asset, decompressing .gz ones.
func readAsset(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(path, ".gz") {
		return data
	}
	zr, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return out
}

func TestMkcomposefsAssets(t *testing.T) {
	dir := upstreamAssetDir(t)
	var absent []string
	ran := 0
	for _, name := range upstreamAssets {
		path := filepath.Join(dir, name)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			absent = append(absent, name)
			continue
		}
		ran++
		t.Run(name, func(t *testing.T) {
			want, err := os.ReadFile(path + ".sha256")
			if err != nil {
				t.Fatal(err)
			}
			opts := DefaultWriteOptions
			if v, err := os.ReadFile(path + ".version"); err == nil {
				n, err := strconv.Atoi(strings.TrimSpace(string(v)))
				if err != nil {
					t.Fatalf("%s.version: %v", name, err)
				}
				opts = WriteOptions{MinVersion: n, MaxVersion: n}
			}
			parse := &DumpfileOptions{Strict: !upstreamNonStrict[name]}

			tree, err := ReadDumpfileOptions(bytes.NewReader(readAsset(t, path)), parse)
			if err != nil {
				t.Fatalf("mkcomposefs accepts %s (strict=%v), we refuse it: %v", name, parse.Strict, err)
			}
			var img bytes.Buffer
			if err := WriteImage(&img, tree, &opts); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(img.Bytes())
			if got, want := hex.EncodeToString(sum[:]), strings.TrimSpace(string(want)); got != want {
				t.Fatalf("image SHA-256 %s, want %s (mkcomposefs 1.0.8)", got, want)
			}

			// composefs-dump IMAGE: the image read back and written again.
			back, err := ReadImage(bytes.NewReader(img.Bytes()), int64(img.Len()))
			if err != nil {
				t.Fatalf("reading our image: %v", err)
			}
			var img2 bytes.Buffer
			if err := WriteImage(&img2, back, &opts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img.Bytes(), img2.Bytes()) {
				t.Fatal("image is not reproducible from its read-back tree")
			}
			// composefs-info dump IMAGE | mkcomposefs --from-file - IMAGE2
			var dump bytes.Buffer
			if err := WriteDumpfile(&dump, back); err != nil {
				t.Fatal(err)
			}
			again, err := ReadDumpfileOptions(bytes.NewReader(dump.Bytes()), parse)
			if err != nil {
				t.Fatalf("parsing our own dump: %v", err)
			}
			img2.Reset()
			if err := WriteImage(&img2, again, &opts); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(img.Bytes(), img2.Bytes()) {
				t.Fatal("image is not reproducible via its dump")
			}
		})
	}
	if ran == 0 {
		t.Fatalf("%s holds none of the assets", dir)
	}
	if len(absent) > 0 {
		t.Logf("assets absent from %s, passed over as upstream's test-checksums.sh does: %s", dir, strings.Join(absent, ", "))
	}
}

func TestMkcomposefsShouldFail(t *testing.T) {
	dir := upstreamAssetDir(t)
	for _, tc := range upstreamShouldFail {
		t.Run(tc.name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(dir, tc.name))
			if err != nil {
				t.Fatal(err)
			}
			tree, err := ReadDumpfile(bytes.NewReader(data))
			if err == nil {
				err = WriteImage(io.Discard, tree, nil)
				if err == nil {
					t.Fatal("accepted; mkcomposefs refuses it")
				}
			} else if de := (*DumpfileError)(nil); !errors.As(err, &de) {
				t.Fatalf("error %v is not a *DumpfileError", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("refused for %v, want the reason %q", err, tc.want)
			}
		})
	}
}
