package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/cfs-compose/cfs-compose/internal/cmdline"
	"github.com/cfs-compose/cfs-compose/internal/uki"
)

// inspectOptions are the flags of `inspect`.
type inspectOptions struct {
	format string
}

func newInspectCmd(g *globals) *cobra.Command {
	opts := &inspectOptions{}
	cmd := &cobra.Command{
		Use:   "inspect",
		Short: "Show what is inside a build artifact",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return usageError{fmt.Errorf("%s: want a kind of artifact (uki)", cmd.CommandPath())}
		},
	}
	cmd.PersistentFlags().StringVar(&opts.format, "format", "text", "output format: text or json")
	cmd.AddCommand(&cobra.Command{
		Use:   "uki FILE",
		Short: "List a UKI's PE sections, its command line, os-release and composefs digest",
		Long: `Reads a Unified Kernel Image (an EFI stub with .linux, .initrd, .cmdline,
.osrel, .uname and .sbat sections) and prints its PE header facts, the section
table (name, RVA, virtual and raw sizes, file offset, characteristics), the
embedded kernel command line, the os-release, and the composefs digest the
command line carries (composefs=<hex> or composefs.digest=v1-sha256-12:<hex>).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.format != "text" && opts.format != "json" {
				return usageError{fmt.Errorf("invalid --format %q (want text or json)", opts.format)}
			}
			info, err := inspectUKI(args[0])
			if err != nil {
				return err
			}
			if opts.format == "json" {
				enc := json.NewEncoder(g.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(info)
			}
			return info.writeText(g.stdout)
		},
	})
	return cmd
}

// ukiInfo is what `inspect uki` reports; the json tags are its JSON form.
type ukiInfo struct {
	File             string           `json:"file"`
	Machine          string           `json:"machine"`
	ImageBase        uint64           `json:"image_base"`
	SectionAlignment uint32           `json:"section_alignment"`
	FileAlignment    uint32           `json:"file_alignment"`
	SizeOfImage      uint32           `json:"size_of_image"`
	CheckSum         uint32           `json:"checksum"`
	ChecksumOK       bool             `json:"checksum_ok"`
	Signed           bool             `json:"signed"`
	Sections         []ukiSectionInfo `json:"sections"`
	Cmdline          *string          `json:"cmdline"`
	OSRelease        *string          `json:"os_release"`
	Uname            *string          `json:"uname"`
	Composefs        *composefsInfo   `json:"composefs"`
}

type ukiSectionInfo struct {
	Name            string `json:"name"`
	RVA             uint32 `json:"rva"`
	VirtualSize     uint32 `json:"virtual_size"`
	RawSize         uint32 `json:"raw_size"`
	RawOffset       uint32 `json:"raw_offset"`
	Characteristics uint32 `json:"characteristics"`
}

type composefsInfo struct {
	Digest    string `json:"digest"` // self-describing form
	Algorithm string `json:"algorithm"`
	Hex       string `json:"hex"`
	Insecure  bool   `json:"insecure"`
	Argument  string `json:"argument"` // composefs or composefs.digest
}

func machineName(m uint16) string {
	switch m {
	case 0x8664:
		return "x86_64"
	case 0xaa64:
		return "aarch64"
	case 0x5064:
		return "riscv64"
	case 0x6264:
		return "loongarch64"
	}
	return fmt.Sprintf("%#x", m)
}

func inspectUKI(path string) (*ukiInfo, error) {
	f, err := uki.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspecting UKI: %w", err)
	}
	defer f.Close()
	info := &ukiInfo{
		File: path, Machine: machineName(f.Machine), ImageBase: f.ImageBase,
		SectionAlignment: f.SectionAlignment, FileAlignment: f.FileAlignment,
		SizeOfImage: f.SizeOfImage, CheckSum: f.CheckSum, Signed: f.Signed,
		Sections: []ukiSectionInfo{},
	}
	sum, err := f.ComputeChecksum()
	if err != nil {
		return nil, fmt.Errorf("inspecting UKI %s: %w", path, err)
	}
	info.ChecksumOK = sum == f.CheckSum
	for _, s := range f.Sections {
		info.Sections = append(info.Sections, ukiSectionInfo{s.Name, s.VirtualAddress, s.VirtualSize, s.Size, s.Offset, s.Characteristics})
	}
	opt := func(get func() (string, error)) (*string, error) {
		v, err := get()
		if errors.Is(err, uki.ErrNoSection) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("inspecting UKI %s: %w", path, err)
		}
		return &v, nil
	}
	if info.Cmdline, err = opt(f.Cmdline); err != nil {
		return nil, err
	}
	if info.OSRelease, err = opt(f.OSRelease); err != nil {
		return nil, err
	}
	if info.Uname, err = opt(f.Uname); err != nil {
		return nil, err
	}
	if info.Cmdline != nil {
		d, err := cmdline.ComposefsDigest(cmdline.Parse(*info.Cmdline))
		switch {
		case err == nil:
			info.Composefs = &composefsInfo{d.String(), d.Algorithm, d.Hex, d.Insecure, d.Form}
		case !errors.Is(err, cmdline.ErrNoDigest):
			return nil, fmt.Errorf("inspecting UKI %s: %w", path, err)
		}
	}
	return info, nil
}

func (u *ukiInfo) writeText(w io.Writer) error {
	ew := &errWriter{w: w}
	yes := map[bool]string{true: "yes", false: "no"}
	ok := map[bool]string{true: "ok", false: "WRONG"}
	fmt.Fprintf(ew, "File:              %s\n", u.File)
	fmt.Fprintf(ew, "Machine:           %s\n", u.Machine)
	fmt.Fprintf(ew, "ImageBase:         %#x\n", u.ImageBase)
	fmt.Fprintf(ew, "Alignment:         section %#x, file %#x\n", u.SectionAlignment, u.FileAlignment)
	fmt.Fprintf(ew, "SizeOfImage:       %#x\n", u.SizeOfImage)
	fmt.Fprintf(ew, "CheckSum:          %#08x (%s)\n", u.CheckSum, ok[u.ChecksumOK])
	fmt.Fprintf(ew, "Signed:            %s\n", yes[u.Signed])
	fmt.Fprintln(ew)
	tw := tabwriter.NewWriter(ew, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "SECTION\tRVA\tVIRTSIZE\tRAWSIZE\tRAWPTR\tCHARACTERISTICS")
	for _, s := range u.Sections {
		fmt.Fprintf(tw, "%s\t%#x\t%#x\t%#x\t%#x\t%#08x\n", s.Name, s.RVA, s.VirtualSize, s.RawSize, s.RawOffset, s.Characteristics)
	}
	tw.Flush()
	fmt.Fprintln(ew)
	str := func(p *string) string {
		if p == nil {
			return "(none)"
		}
		return *p
	}
	fmt.Fprintf(ew, "Cmdline:           %s\n", str(u.Cmdline))
	fmt.Fprintf(ew, "Uname:             %s\n", str(u.Uname))
	if u.Composefs != nil {
		fmt.Fprintf(ew, "Composefs digest:  %s (from %s=)\n", u.Composefs.Digest, u.Composefs.Argument)
	} else {
		fmt.Fprintf(ew, "Composefs digest:  (none)\n")
	}
	fmt.Fprintf(ew, "OS release:\n")
	if u.OSRelease == nil {
		fmt.Fprintf(ew, "  (none)\n")
	} else {
		for _, l := range strings.Split(*u.OSRelease, "\n") {
			fmt.Fprintf(ew, "  %s\n", l)
		}
	}
	return ew.err
}

// errWriter remembers the first write error.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(p []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(p)
	e.err = err
	return n, err
}
