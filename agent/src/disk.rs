//! Direct I/O on local files: the folder store's objects and the read
//! cache's disk tier bypass the page cache where the filesystem allows.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// Turns direct I/O on for `file`; false where its filesystem has none
/// (tmpfs, for one, may refuse it).
pub fn set_direct(file: &File) -> bool {
    let fd = file.as_raw_fd();
    // SAFETY: plain system calls on a file descriptor `file` keeps open.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0 && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_DIRECT) == 0
    }
}

/// Whether files in `dir` take direct I/O.
pub fn has_direct_io(dir: &Path) -> bool {
    let probe = dir.join(".direct-io-probe");
    let direct = File::create(&probe).is_ok_and(|f| set_direct(&f));
    let _ = std::fs::remove_file(&probe);
    direct
}
