//! Reading certificate files (PEM or DER) and writing sets of output files all-or-nothing:
//! every file goes to a temporary file in its target directory (keys created 0600, never
//! chmod-ed afterwards) and is renamed into place only when all of them were written.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom, SystemRandom};
use rustls_pki_types::CertificateDer;

use super::IssueError;

/// One file of a set to write.
pub struct OutputFile {
    pub path: PathBuf,
    pub contents: zeroize::Zeroizing<Vec<u8>>,
    /// Private key material: created with mode 0600 instead of 0644.
    pub secret: bool,
}

impl OutputFile {
    pub fn public(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        OutputFile {
            path: path.into(),
            contents: zeroize::Zeroizing::new(contents.into()),
            secret: false,
        }
    }

    pub fn secret(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Self {
        OutputFile {
            path: path.into(),
            contents: zeroize::Zeroizing::new(contents.into()),
            secret: true,
        }
    }
}

/// Writes every file or none. Without `force`, refuses (before writing anything) if any
/// target exists. On any failure, temporary files are removed, and so are targets this
/// call created, so a set is never left half-written.
pub fn write_file_set(files: &[OutputFile], force: bool) -> Result<(), IssueError> {
    if !force {
        let existing: Vec<PathBuf> = files
            .iter()
            .filter(|f| f.path.symlink_metadata().is_ok())
            .map(|f| f.path.clone())
            .collect();
        if !existing.is_empty() {
            return Err(IssueError::Exists { paths: existing });
        }
    }
    for file in files {
        if let Some(dir) = parent(&file.path) {
            fs::create_dir_all(dir).map_err(|error| IssueError::Write {
                path: dir.to_path_buf(),
                error,
            })?;
        }
    }

    let mut temps: Vec<PathBuf> = Vec::with_capacity(files.len());
    for file in files {
        match write_temp(file) {
            Ok(temp) => temps.push(temp),
            Err(e) => {
                remove_all(&temps);
                return Err(e);
            }
        }
    }

    for (i, (file, temp)) in files.iter().zip(&temps).enumerate() {
        if let Err(error) = fs::rename(temp, &file.path) {
            remove_all(&temps[i..]);
            if !force {
                // These did not exist before this call: take them back out.
                let placed: Vec<PathBuf> = files[..i].iter().map(|f| f.path.clone()).collect();
                remove_all(&placed);
            }
            return Err(IssueError::Write {
                path: file.path.clone(),
                error,
            });
        }
    }
    for file in files {
        sync_dir(parent(&file.path).unwrap_or(Path::new(".")));
    }
    Ok(())
}

fn parent(path: &Path) -> Option<&Path> {
    path.parent().filter(|p| !p.as_os_str().is_empty())
}

fn write_temp(file: &OutputFile) -> Result<PathBuf, IssueError> {
    let dir = parent(&file.path).unwrap_or(Path::new("."));
    let name = file
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".into());
    let mut suffix = [0u8; 6];
    SystemRandom::new()
        .fill(&mut suffix)
        .map_err(|_| IssueError::Crypto("the system random generator failed".into()))?;
    let temp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        hex(&suffix)
    ));

    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if file.secret { 0o600 } else { 0o644 });
    }
    let write_error = |error| IssueError::Write {
        path: file.path.clone(),
        error,
    };
    let mut out = options.open(&temp).map_err(write_error)?;
    let result = out.write_all(&file.contents).and_then(|()| out.sync_all());
    if let Err(error) = result {
        let _ = fs::remove_file(&temp);
        return Err(write_error(error));
    }
    Ok(temp)
}

fn remove_all(paths: &[PathBuf]) {
    for path in paths {
        let _ = fs::remove_file(path);
    }
}

/// Makes the renames durable; best effort (not every platform can open a directory).
fn sync_dir(dir: &Path) {
    if let Ok(handle) = fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads certificates from a PEM file (every `CERTIFICATE` block, in order) or a DER file
/// (one certificate), with the gateway's own loader so both accept the same files.
pub fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, IssueError> {
    Ok(crate::load_certs(path)?)
}

/// Certificates as concatenated PEM blocks.
pub fn certificates_pem(certs: &[CertificateDer<'_>]) -> String {
    certs
        .iter()
        .map(|c| {
            pem::encode_config(
                &pem::Pem::new("CERTIFICATE", c.to_vec()),
                super::keys::pem_config(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_to_overwrite_and_writes_nothing() {
        let dir = tempdir();
        fs::write(dir.join("b.crt"), "old").unwrap();
        let files = vec![
            OutputFile::public(dir.join("a.crt"), "a"),
            OutputFile::public(dir.join("b.crt"), "b"),
        ];
        let err = write_file_set(&files, false).unwrap_err();
        assert!(matches!(err, IssueError::Exists { ref paths } if paths == &[dir.join("b.crt")]));
        assert!(!dir.join("a.crt").exists());
        assert_eq!(fs::read_to_string(dir.join("b.crt")).unwrap(), "old");

        write_file_set(&files, true).unwrap();
        assert_eq!(fs::read_to_string(dir.join("b.crt")).unwrap(), "b");
        assert_eq!(
            fs::read_dir(&dir).unwrap().count(),
            2,
            "no temporary files left behind"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn secret_files_are_created_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let files = vec![
            OutputFile::secret(dir.join("k.key"), "k"),
            OutputFile::public(dir.join("c.crt"), "c"),
        ];
        write_file_set(&files, false).unwrap();
        assert_eq!(
            fs::metadata(dir.join("k.key"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failed_write_leaves_nothing() {
        let dir = tempdir();
        // The second target's directory is a file, so creating it fails.
        fs::write(dir.join("notadir"), "").unwrap();
        let files = vec![
            OutputFile::public(dir.join("a.crt"), "a"),
            OutputFile::public(dir.join("notadir/b.crt"), "b"),
        ];
        assert!(write_file_set(&files, false).is_err());
        assert!(!dir.join("a.crt").exists());
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        let _ = fs::remove_dir_all(&dir);
    }

    fn tempdir() -> PathBuf {
        let mut suffix = [0u8; 8];
        SystemRandom::new().fill(&mut suffix).unwrap();
        let dir = std::env::temp_dir().join(format!("certgate-files-test-{}", hex(&suffix)));
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}
