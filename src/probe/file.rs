//! Opening the files the probes read (the service's log and env file).
//!
//! A plain `open` of a FIFO blocks until a writer appears, and a blocked
//! thread cannot be cancelled: `check` then hangs at exit and `watch` leaks a
//! thread per cycle. So files are opened with `O_NONBLOCK` (an open that
//! would wait returns at once) and anything that is not a regular file is
//! refused with a reason naming what it is.

use std::fs::{File, Metadata};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a file a probe reads cannot be read; `what` names the file ("log
/// file", "env file") and the text is the probe's one-line reason.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// Nothing at the path.
    #[error("{what} {} does not exist", .path.display())]
    Missing {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
    },
    /// Opening, inspecting or reading it failed.
    #[error("{what} {}: {source}", .path.display())]
    Io {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A FIFO, a directory, a device...: never opened or read.
    #[error("{what} {} is {kind}, not a regular file", .path.display())]
    NotRegular {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// What it is ([`check_regular`]).
        kind: &'static str,
    },
    /// Larger than the probe reads.
    #[error("{what} {} is {size} bytes, more than the {max} read", .path.display())]
    TooLarge {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: PathBuf,
        /// Its size, bytes.
        size: u64,
        /// The most read, bytes.
        max: u64,
    },
}

impl FileError {
    /// An I/O error on `path`: [`FileError::Missing`] when nothing is there.
    pub fn io(what: &'static str, path: &Path, e: std::io::Error) -> FileError {
        let path = path.to_path_buf();
        match e.kind() {
            std::io::ErrorKind::NotFound => FileError::Missing { what, path },
            _ => FileError::Io {
                what,
                path,
                source: e,
            },
        }
    }

    /// `path` is not a regular file but `kind`.
    pub fn not_regular(what: &'static str, path: &Path, kind: &'static str) -> FileError {
        FileError::NotRegular {
            what,
            path: path.to_path_buf(),
            kind,
        }
    }
}

impl From<FileError> for crate::sample::ProbeError {
    /// The probe's failure: same text, typed by what is wrong with the file.
    fn from(e: FileError) -> Self {
        use crate::sample::ProbeError;
        let file = |what: &str, path: &Path| format!("{what} {}", path.display());
        match e {
            FileError::Missing { what, path } => ProbeError::MissingFile {
                file: file(what, &path),
            },
            FileError::Io { what, path, source } => ProbeError::failed(file(what, &path), source),
            FileError::NotRegular { what, path, kind } => ProbeError::NotRegularFile {
                file: file(what, &path),
                kind: kind.to_string(),
            },
            FileError::TooLarge {
                what,
                path,
                size,
                max,
            } => ProbeError::FileTooLarge {
                file: file(what, &path),
                size,
                max,
            },
        }
    }
}

/// Opens `path` for reading without blocking and accepts only a regular file.
/// `what` names the file in reasons ("log file", "env file").
pub fn open_regular(path: &Path, what: &'static str) -> Result<(File, Metadata), FileError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| FileError::io(what, path, e))?;
    let meta = file.metadata().map_err(|source| FileError::Io {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    check_regular(&meta).map_err(|kind| FileError::not_regular(what, path, kind))?;
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
pub fn read_regular(path: &Path, what: &'static str, max: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    let (file, meta) = open_regular(path, what)?;
    if meta.len() > max {
        return Err(FileError::TooLarge {
            what,
            path: path.to_path_buf(),
            size: meta.len(),
            max,
        });
    }
    let mut buf = Vec::with_capacity(meta.len() as usize);
    file.take(max)
        .read_to_end(&mut buf)
        .map_err(|source| FileError::Io {
            what,
            path: path.to_path_buf(),
            source,
        })?;
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
        assert!(
            matches!(e, FileError::NotRegular { kind: "a FIFO", .. }),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            format!("log file {} is a FIFO, not a regular file", fifo.display())
        );
        let e = open_regular(dir.path(), "env file").expect_err("a directory is refused");
        assert!(e.to_string().contains("is a directory"), "{e}");
        let none = dir.path().join("none");
        let e = open_regular(&none, "env file").expect_err("missing");
        assert!(matches!(e, FileError::Missing { .. }), "{e}");
        assert_eq!(
            e.to_string(),
            format!("env file {} does not exist", none.display())
        );
    }

    #[test]
    fn a_regular_file_is_read_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.env");
        std::fs::write(&p, "A=1\n").expect("write");
        assert_eq!(read_regular(&p, "env file", 100).expect("read"), b"A=1\n");
        let e = read_regular(&p, "env file", 2).expect_err("too big");
        assert_eq!(
            e.to_string(),
            format!("env file {} is 4 bytes, more than the 2 read", p.display())
        );
    }

    #[test]
    fn a_file_error_is_the_probe_error_of_the_same_text() {
        use crate::sample::ProbeError;
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.env");
        std::fs::write(&p, "A=1\n").expect("write");
        let cases = [
            read_regular(&p, "env file", 2).expect_err("too big"),
            open_regular(dir.path(), "env file").expect_err("a directory"),
            open_regular(&dir.path().join("none"), "log file").expect_err("missing"),
        ];
        for e in cases {
            let text = e.to_string();
            let probe: ProbeError = e.into();
            assert_eq!(probe.to_string(), text);
            assert!(!matches!(probe, ProbeError::Other(_)), "{probe:?}");
        }
    }
}
