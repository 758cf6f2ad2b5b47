//! Opening the files the probes read (the service's log and env file).
//!
//! A plain `open` of a FIFO blocks until a writer appears, and a blocked
//! thread cannot be cancelled: `check` then hangs at exit and `watch` leaks a
//! thread per cycle. So files are opened with `O_NONBLOCK` (an open that
//! would wait returns at once) and anything that is not a regular file is
//! refused with a reason naming what it is.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Opens `path` for reading without blocking and accepts only a regular file.
/// `what` names the file in reasons ("log file", "env file").
pub fn open_regular(path: &Path, what: &str) -> Result<(File, Metadata), String> {
    let shown = path.display();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => format!("{what} {shown} does not exist"),
            _ => format!("{what} {shown}: {e}"),
        })?;
    let meta = file
        .metadata()
        .map_err(|e| format!("{what} {shown}: {e}"))?;
    check_regular(&meta).map_err(|kind| format!("{what} {shown} is {kind}, not a regular file"))?;
    Ok((file, meta))
}

/// `Err(description)` unless the metadata is of a regular file.
pub fn check_regular(meta: &Metadata) -> Result<(), &'static str> {
    let t = meta.file_type();
    if t.is_file() {
        Ok(())
    } else if t.is_fifo() {
        Err("a FIFO")
    } else if t.is_dir() {
        Err("a directory")
    } else if t.is_socket() {
        Err("a socket")
    } else if t.is_char_device() {
        Err("a character device")
    } else if t.is_block_device() {
        Err("a block device")
    } else {
        Err("not a file")
    }
}

/// Reads a whole regular file of at most `max` bytes (an env file is small;
/// a huge one is a mistake, not something to load).
pub fn read_regular(path: &Path, what: &str, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let (file, meta) = open_regular(path, what)?;
    if meta.len() > max {
        return Err(format!(
            "{what} {} is {} bytes, more than the {max} read",
            path.display(),
            meta.len()
        ));
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_is_refused_at_once_and_a_directory_too() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("pipe");
        let c = std::ffi::CString::new(fifo.display().to_string()).expect("path");
        // SAFETY: a valid NUL-terminated path; mkfifo only creates a node.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        let e = open_regular(&fifo, "log file").expect_err("a FIFO is refused");
        assert!(e.contains("is a FIFO, not a regular file"), "{e}");
        let e = open_regular(dir.path(), "env file").expect_err("a directory is refused");
        assert!(e.contains("is a directory"), "{e}");
        let e = open_regular(&dir.path().join("none"), "env file").expect_err("missing");
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn a_regular_file_is_read_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.env");
        std::fs::write(&p, "A=1\n").expect("write");
        assert_eq!(read_regular(&p, "env file", 100).expect("read"), b"A=1\n");
        let e = read_regular(&p, "env file", 2).expect_err("too big");
        assert!(e.contains("more than the 2"), "{e}");
    }
}
