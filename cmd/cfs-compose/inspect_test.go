package main

import (
	"bytes"
	"os"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cfs-compose/cfs-compose/internal/uki"
	"github.com/cfs-compose/cfs-compose/internal/uki/ukitest"
)

// cmdMkUKI implements "mkuki OUT CMDLINE": write a UKI built from a
// synthetic stub, a fake kernel and initrd, with the given command line.
func cmdMkUKI(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mkuki OUT CMDLINE")
	}
	stub := ukitest.Stub(4, 0x400, 0x1000, 0x200, nil)
	var buf bytes.Buffer
	err := uki.Build(&buf, bytes.NewReader(stub), int64(len(stub)), uki.Sections{
		Linux:   strings.NewReader("not really a kernel"),
		Initrd:  strings.NewReader("not really an initrd"),
		Cmdline: args[1],
		OSRel:   "ID=testbed\nVERSION_ID=1",
		Uname:   "6.12.0-test",
	})
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), buf.Bytes(), 0o644))
}
