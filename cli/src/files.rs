//! Local files: hashing a model as a stream, and writing outputs atomically.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::CliError;

/// sha256 and size of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileDigest {
    /// sha256 of the bytes.
    pub sha256: [u8; 32],
    /// Number of bytes.
    pub size: u64,
}

impl FileDigest {
    /// Lowercase hex sha256.
    pub fn hex(&self) -> String {
        hex::encode(self.sha256)
    }
}

/// Hashes `reader` to its end without holding more than a buffer of it.
pub fn digest_reader(mut reader: impl Read) -> io::Result<FileDigest> {
    let mut hasher = Sha256::new();
    let size = io::copy(&mut reader, &mut hasher)?;
    Ok(FileDigest {
        sha256: hasher.finalize().into(),
        size,
    })
}

/// Opens a model file for reading, with an error that names it.
pub fn open(path: &Path) -> Result<File, CliError> {
    let file = File::open(path).map_err(|e| CliError::io(path.display(), e))?;
    let meta = file
        .metadata()
        .map_err(|e| CliError::io(path.display(), e))?;
    if !meta.is_file() {
        return Err(CliError::usage(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    Ok(file)
}

/// Reads a small text file (key, signature), with an error that names it.
pub fn read_text(path: &Path) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|e| CliError::io(path.display(), e))
}

/// `path` with `suffix` appended to its file name: `m.onnx` + `.sig` = `m.onnx.sig`.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(suffix);
    path.with_file_name(name)
}

/// Who may read a written file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Owner only (0600): private keys.
    Private,
    /// Readable by everyone (0644): public keys, signatures, trust roots.
    Public,
}

/// Writes `bytes` to `path` atomically (a temporary file in the same directory, renamed into
/// place), so a reader never sees half a key or signature. Refuses to replace an existing file
/// unless `overwrite`.
pub fn write_atomically(
    path: &Path,
    bytes: &[u8],
    mode: Mode,
    overwrite: bool,
) -> Result<(), CliError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let fail = |e: io::Error| CliError::io(path.display(), e);
    // tempfile creates the file with mode 0600 on Unix.
    let mut temp = tempfile::Builder::new()
        .prefix(".flotilla-")
        .tempfile_in(dir)
        .map_err(fail)?;
    temp.write_all(bytes).map_err(fail)?;
    temp.as_file().sync_all().map_err(fail)?;
    #[cfg(unix)]
    if mode == Mode::Public {
        use std::os::unix::fs::PermissionsExt;
        temp.as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(fail)?;
    }
    #[cfg(not(unix))]
    let _ = mode;
    let persisted = if overwrite {
        temp.persist(path).map(drop)
    } else {
        temp.persist_noclobber(path).map(drop)
    };
    persisted.map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            CliError::usage(format!(
                "{} already exists; pass --force to replace it",
                path.display()
            ))
        } else {
            fail(e.error)
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_sha256_of_the_bytes() {
        let bytes = vec![7u8; 200_000];
        let digest = digest_reader(&bytes[..]).unwrap();
        assert_eq!(digest.size, 200_000);
        assert_eq!(digest.hex(), hex::encode(Sha256::digest(&bytes)));
        let empty = digest_reader(io::empty()).unwrap();
        assert_eq!(
            empty.hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn the_sample_model_hashes_to_its_published_digest() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/fraud-1.0.0.onnx");
        let digest = digest_reader(open(&path).unwrap()).unwrap();
        assert_eq!(
            digest.hex(),
            "acd677248c71ff3e867b154091bc80400be47d6b515d07002794b6c74b3af7e2"
        );
        assert_eq!(digest.size, 1101);
    }

    #[test]
    fn suffix_is_appended_to_the_file_name() {
        assert_eq!(
            with_suffix(Path::new("models/m.onnx"), ".sig"),
            PathBuf::from("models/m.onnx.sig")
        );
        assert_eq!(with_suffix(Path::new("k"), ".pub"), PathBuf::from("k.pub"));
    }

    #[test]
    fn atomic_write_refuses_to_clobber_unless_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        write_atomically(&path, b"one", Mode::Public, false).unwrap();
        let err = write_atomically(&path, b"two", Mode::Public, false).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), ("usage", 2));
        assert!(err.to_string().contains("--force"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_atomically(&path, b"two", Mode::Public, true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_owner_only_and_public_ones_world_readable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("k.key");
        let public = dir.path().join("k.pub");
        write_atomically(&private, b"s", Mode::Private, false).unwrap();
        write_atomically(&public, b"p", Mode::Public, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&private), 0o600);
        assert_eq!(mode(&public), 0o644);
    }

    #[test]
    fn directories_are_not_models() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(open(dir.path()).unwrap_err().exit_code(), 2);
        assert_eq!(open(&dir.path().join("missing")).unwrap_err().code(), "io");
    }
}
