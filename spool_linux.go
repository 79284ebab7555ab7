package migrate

import "syscall"

// punchHole frees the disk blocks of the file's bytes [off, off+n) that every reader has
// passed, keeping the file's size and offsets (FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE),
// so that a long follow does not fill the disk with what the target already holds. A file
// system that cannot punch holes keeps the blocks.
func punchHole(fd uintptr, off, n int64) error {
	const punchHole, keepSize = 0x02, 0x01
	return syscall.Fallocate(int(fd), punchHole|keepSize, off, n)
}
