// Command cfs-compose is the release-engineering tool for composefs-based,
// image-based Fedora variants: HCL manifests drive a staged pipeline from a
// bootable container image to signed, boot-tested GPT disk images.
//
// The command is deliberately thin: every verb turns its flags into one
// library call (package pipeline, stages, signing, testbed or internal/...)
// and renders the result. Only main calls os.Exit.
//
// Exit codes: 0 success; 1 errors or error diagnostics; 2 usage errors
// (unknown verb or flag, wrong number of arguments).
package main

import (
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
