//go:build unix

package capture

import (
	"os"
	"syscall"
)

// fileID returns the device and inode of fi, which identify a file across
// renames.
func fileID(fi os.FileInfo) (dev, ino uint64) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Dev), uint64(st.Ino) //nolint:unconvert // Dev is int32 on some platforms
	}
	return 0, 0
}
