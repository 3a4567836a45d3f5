// Package boottest is the last pipeline stage: it boots a variant's disk
// image in QEMU with the testbed runner and checks the booted system.
//
// The parts follow the stage shape of the repository:
//
//   - [Config] (config.go): the resolved, JSON-serializable stage config:
//     the checks to run, the timeout and guest memory, the UEFI firmware
//     (paths, with their SHA-256 in the cache key through
//     [Config.CacheKey]), the Secure Boot db certificate to enroll, and
//     what the image is expected to be (composefs or a plain root, the
//     verity mode, a signed composefs digest, Secure Boot enforced).
//   - [Stage.Plan] / [Resolve] (plan.go): skips the stage unless the
//     manifest says test { boot = true }, checks the check names against
//     the registry, finds the default firmware for the arch and hashes the
//     firmware files and the db certificate.
//   - [Stage.Run] (run.go) reads the "disk/raw" input (and the
//     "composefs/digest" input when composefs is enabled) and calls [Test]
//     (test.go): with Secure Boot, a throwaway PK and KEK are generated and
//     enrolled with the manifest's db certificate into a copy of the
//     variable store template; the disk boots through a throwaway qcow2
//     overlay (the artifact is never written); the agent's report is
//     evaluated by the checks of testbed/checks that apply. The outputs are
//     "results" (JSON, [artifacts.BootTestResults]), "junit" (JUnit XML)
//     and "console" (the timestamped serial log), published under
//     <Variant>/<arch>/tests/. A failing check fails the stage with the
//     check names and the last console lines.
//
// The user-facing reference is docs/testbed.md, section "Boot tests in the
// pipeline".
package boottest
