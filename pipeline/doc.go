// Package pipeline turns a manifest set into a compose: it resolves the
// manifests into a plan (a DAG of stage instances per variant and arch,
// shared where identical), executes the plan with bounded parallelism and a
// content-addressed stage cache, and writes the compose directory with its
// records.
//
// The phases are separate functions with separate types:
//
//	manifest.Load  -> *manifest.Manifest   (package manifest)
//	Resolve        -> *Plan                (stage configs pinned; no artifacts touched)
//	Execute        -> *Result              (cache look-up, run, record)
//	Build          -> compose directory    (Resolve + Execute + publish)
//
// Stages plug in through the [Stage] interface; the table of stage kinds
// comes from package stages and is handed in by the caller, so this
// package never imports a stage.
//
// A stage instance's cache key is the sha256 of its kind, its
// implementation version, the canonical JSON of its resolved config and the
// digests of the artifacts it consumes -- nothing else (no paths, no
// clocks), so keys are stable across runs and machines.
package pipeline
