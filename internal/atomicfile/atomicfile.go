// Package atomicfile writes files so that readers see either the old
// content or the complete new content, never a partial file: data goes to a
// temporary file in the destination directory, is synced, and is renamed
// over the destination. It is the project's one temp-and-rename writer:
// [Publish] moves a finished temporary file or directory that something
// else wrote (mkfs, qemu-img, a build directory) into place the same way.
package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile writes data to name atomically with permission perm. On error
// the destination is unchanged and no temporary file is left behind.
func WriteFile(name string, data []byte, perm os.FileMode) error {
	return WriteFileWith(name, data, perm, nil)
}

// WriteFileWith is [WriteFile] with options; nil means the defaults.
func WriteFileWith(name string, data []byte, perm os.FileMode, opts *Options) error {
	f, err := CreateWith(name, perm, opts)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Abort()
		return fmt.Errorf("writing %s: %w", f.Name(), err)
	}
	return f.Commit()
}

// File is a temporary file that becomes the destination on [File.Commit].
type File struct {
	*os.File
	dest   string
	done   bool
	noSync bool
}

// Create opens a temporary file next to name with permission perm (the
// umask does not apply). The caller must call either [File.Commit] or
// [File.Abort]; Abort after Commit is a no-op, so `defer f.Abort()` is safe.
func Create(name string, perm os.FileMode) (*File, error) {
	return CreateWith(name, perm, nil)
}

// CreateWith is [Create] with options; nil means the defaults.
func CreateWith(name string, perm os.FileMode, opts *Options) (*File, error) {
	if opts == nil {
		opts = &Options{}
	}
	f, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".tmp*")
	if err != nil {
		return nil, fmt.Errorf("creating temporary file for %s: %w", name, err)
	}
	if err := f.Chmod(perm); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("setting mode of %s: %w", f.Name(), err)
	}
	return &File{File: f, dest: name, noSync: opts.NoSync}, nil
}

// Commit syncs and closes the temporary file and renames it to the
// destination. On error the temporary file is removed.
func (f *File) Commit() error {
	if f.done {
		return fmt.Errorf("committing %s: already committed or aborted", f.dest)
	}
	f.done = true
	if f.noSync {
		// the caller syncs the filesystem later
	} else if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(f.Name())
		return fmt.Errorf("syncing %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("closing %s: %w", f.Name(), err)
	}
	if err := os.Rename(f.Name(), f.dest); err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("renaming %s to %s: %w", f.Name(), f.dest, err)
	}
	return nil
}

// Abort closes and removes the temporary file unless it was committed.
func (f *File) Abort() {
	if f.done {
		return
	}
	f.done = true
	f.Close()
	os.Remove(f.Name())
}

// Options control [CreateWith] and [WriteFileWith].
type Options struct {
	// NoSync skips the fsync before the rename, for callers that sync the
	// whole filesystem once at the end (a content store writing many
	// files); the rename is still atomic, but the content may not be
	// durable until that sync.
	NoSync bool
}

// Publish atomically moves tmp, a finished file or directory, to dest (in
// the same filesystem), replacing a file (or an empty directory) there.
// On error tmp is removed.
func Publish(tmp, dest string) error {
	if err := os.Rename(tmp, dest); err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("moving %s into place as %s: %w", tmp, dest, err)
	}
	return nil
}

// PublishKeep is [Publish] that leaves tmp in place on error, for callers
// that clean up themselves or retry.
func PublishKeep(tmp, dest string) error {
	if err := os.Rename(tmp, dest); err != nil {
		return fmt.Errorf("moving %s into place as %s: %w", tmp, dest, err)
	}
	return nil
}
