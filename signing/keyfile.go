package signing

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// KeyFileError says that a private key file is open to other users: the
// file can be read or written by its group or by others, or it sits in a
// directory that they can write to (and so replace the key). Like ssh's
// "UNPROTECTED PRIVATE KEY FILE" it is a warning: the key still loads.
type KeyFileError struct {
	Path string      // the key file
	Dir  string      // set when the directory is the problem
	Mode fs.FileMode // permission bits of Path, or of Dir
}

func (e *KeyFileError) Error() string {
	if e.Dir != "" {
		return fmt.Sprintf("private key %s is in directory %s with permissions %04o: group or others can replace the key (chmod go-w %s)", e.Path, e.Dir, uint32(e.Mode), e.Dir)
	}
	return fmt.Sprintf("private key %s has permissions %04o, which are too open: group or others can access it; private keys must be accessible by their owner only (chmod 600 %s)", e.Path, uint32(e.Mode), e.Path)
}

// CheckKeyFile checks the permissions of a private key file the way ssh
// checks identity files: nil when only its owner can access it, a
// [*KeyFileError] when group or others can read or write it, or write to
// its directory (unless the directory is sticky, as /tmp is). Errors of
// os.Stat are returned as they are. The check is advisory; callers warn.
func CheckKeyFile(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return &KeyFileError{Path: path, Mode: m}
	}
	dir := filepath.Dir(path)
	dst, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if m := dst.Mode(); m.Perm()&0o022 != 0 && m&fs.ModeSticky == 0 {
		return &KeyFileError{Path: path, Dir: dir, Mode: m.Perm()}
	}
	return nil
}
