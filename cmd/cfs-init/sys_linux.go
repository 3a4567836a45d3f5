package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// linuxSystem is the real system: syscalls on the running kernel.
type linuxSystem struct{}

func (linuxSystem) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (linuxSystem) LoadModule(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return unix.FinitModule(int(f.Fd()), "", 0)
}

func (linuxSystem) MeasureVerity(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	// struct fsverity_digest { u16 algorithm; u16 size; u8 digest[]; }
	buf := make([]byte, 4+64)
	*(*uint16)(unsafe.Pointer(&buf[2])) = 64
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.FS_IOC_MEASURE_VERITY, uintptr(unsafe.Pointer(&buf[0])))
	switch errno {
	case 0:
	case unix.ENODATA, unix.ENOTTY, unix.EOPNOTSUPP, unix.EINVAL:
		return nil, errNoVerity
	default:
		return nil, errno
	}
	alg := *(*uint16)(unsafe.Pointer(&buf[0]))
	size := *(*uint16)(unsafe.Pointer(&buf[2]))
	if alg != 1 || size != 32 {
		return nil, fmt.Errorf("fs-verity digest algorithm %d size %d, want SHA-256", alg, size)
	}
	return append([]byte(nil), buf[4:4+32]...), nil
}

func (linuxSystem) EnableVerity(p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	arg := unix.FsverityEnableArg{Version: 1, Hash_algorithm: 1, Block_size: 4096}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.FS_IOC_ENABLE_VERITY, uintptr(unsafe.Pointer(&arg)))
	if errno != 0 && errno != unix.EEXIST {
		return errno
	}
	return nil
}

func (s linuxSystem) MountImage(file, target, fstype string, loop bool) (string, error) {
	direct := errors.New("not tried (cfs.erofs=loop)")
	if !loop {
		if direct = unix.Mount(file, target, fstype, unix.MS_RDONLY, ""); direct == nil {
			return "", nil
		}
	}
	dev, lf, err := attachLoop(file)
	if err != nil {
		return "", fmt.Errorf("file-backed mount: %v; loop device: %w", direct, err)
	}
	// The device auto-clears on its last close: keep it open until the
	// mount holds it.
	defer lf.Close()
	if err := unix.Mount(dev, target, fstype, unix.MS_RDONLY, ""); err != nil {
		return "", fmt.Errorf("file-backed mount: %v; through %s: %w", direct, dev, err)
	}
	return dev, nil
}

// attachLoop binds a free loop device to file, read-only, auto-clearing,
// and returns it with an open descriptor: the caller closes that once the
// device is in use (closing it earlier clears the device).
func attachLoop(file string) (string, *os.File, error) {
	ctl, err := os.OpenFile("/dev/loop-control", os.O_RDWR, 0)
	if err != nil {
		return "", nil, err
	}
	defer ctl.Close()
	f, err := os.Open(file)
	if err != nil {
		return "", nil, err
	}
	defer f.Close()
	for try := 0; try < 10; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", nil, fmt.Errorf("LOOP_CTL_GET_FREE: %w", err)
		}
		dev := fmt.Sprintf("/dev/loop%d", n)
		var lf *os.File
		for i := 0; i < 50; i++ { // devtmpfs creates the node asynchronously
			if lf, err = os.OpenFile(dev, os.O_RDONLY, 0); err == nil || !errors.Is(err, os.ErrNotExist) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil {
			return "", nil, err
		}
		cfg := unix.LoopConfig{Fd: uint32(f.Fd())}
		cfg.Info.Flags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
		err = unix.IoctlLoopConfigure(int(lf.Fd()), &cfg)
		if errors.Is(err, unix.EBUSY) {
			lf.Close()
			continue // raced with another user of the device
		}
		if err != nil {
			lf.Close()
			return "", nil, fmt.Errorf("LOOP_CONFIGURE %s: %w", dev, err)
		}
		return dev, lf, nil
	}
	return "", nil, errors.New("no free loop device")
}

// SwitchRoot moves /dev, /proc, /sys and /run into newRoot (unmounting
// them when newRoot lacks the directory), deletes the initramfs contents
// to free their memory, and makes newRoot the root.
func (linuxSystem) SwitchRoot(newRoot string) error {
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		dst := filepath.Join(newRoot, m)
		if fi, err := os.Stat(dst); err == nil && fi.IsDir() {
			if err := unix.Mount(m, dst, "", unix.MS_MOVE, ""); err != nil {
				return fmt.Errorf("moving %s: %w", m, err)
			}
		} else if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("unmounting %s: %w", m, err)
		}
	}
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs("/", &st); err == nil && (st.Type == unix.RAMFS_MAGIC || st.Type == unix.TMPFS_MAGIC) {
		var root unix.Stat_t
		if err := unix.Lstat("/", &root); err == nil {
			removeRootfs("/", root.Dev, newRoot)
		}
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("moving %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	return unix.Chdir("/")
}

// removeRootfs deletes the initramfs files under dir that live on the
// rootfs device, skipping mount points and keep.
func removeRootfs(dir string, dev uint64, keep string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(dir, e.Name())
		if p == keep {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(p, &st) != nil || st.Dev != dev {
			continue
		}
		if e.IsDir() {
			removeRootfs(p, dev, keep)
			unix.Rmdir(p)
		} else {
			unix.Unlink(p)
		}
	}
}

func (linuxSystem) Exec(p string, argv, env []string) error {
	return unix.Exec(p, argv, env)
}
