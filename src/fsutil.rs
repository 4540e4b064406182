//! File writing that never leaves a half-written file behind, never loses a
//! file to a copy onto itself, and never lets two writers share a temporary.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` through a uniquely named temporary file in the
/// same folder and a rename, so readers see the old file or the new one,
/// never a torn one, and parallel writers of the same path (two products
/// sharing one image write the same thumbnail) cannot collide.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut tmp = temp_file_beside(path)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    // On failure the temporary is removed when `tmp` (or the error) drops.
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temporary file in `path`'s folder (created if missing), for writers
/// that stream a file and then `persist` it over `path`: removed if
/// dropped first, so a failed write leaves the old file.
pub fn temp_file_beside(path: &Path) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".lookalike-").suffix(".tmp");
    // Site files are served by static hosts that run as another user:
    // readable by all, as a plain `File::create` under the usual umask.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o644));
    }
    builder.tempfile_in(dir)
}

/// Removes a file or a folder; one that is not there is not an error.
pub fn remove_if_present(path: &Path) -> std::io::Result<()> {
    let removed =
        if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    match removed {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether two paths name the same existing file (through links, `.` and
/// `..`); a copy from one to the other would empty it.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Copies a file by reading it whole and writing it atomically: a copy
/// onto itself (a site rebuilt from inside its own folder) keeps the file.
pub fn copy_file(from: &Path, to: &Path) -> std::io::Result<()> {
    if same_file(from, to) {
        return Ok(());
    }
    let bytes = std::fs::read(from)?;
    write_atomic(to, &bytes)
}

/// Copies a folder tree, replacing files that already exist. Symbolic links
/// are not followed (a hostile link could pull any file into the site), and
/// a destination inside the source is not copied into itself.
pub fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    if same_file(from, to) {
        return Ok(());
    }
    std::fs::create_dir_all(to)?;
    let destination = to.canonicalize()?;
    copy_dir_into(from, to, &destination)
}

fn copy_dir_into(from: &Path, to: &Path, destination: &PathBuf) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let source = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type()?;
        if kind.is_dir() {
            // The destination, or a folder on the way to it: skipped, or
            // the copy would copy itself.
            if source.canonicalize().is_ok_and(|s| destination.starts_with(s)) {
                continue;
            }
            copy_dir_into(&source, &target, destination)?;
        } else if kind.is_file() {
            copy_file(&source, &target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.bin");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn parallel_writers_of_one_path_never_collide() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("thumb.jpg");
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..16)
                .map(|i| {
                    scope.spawn({
                        let path = path.clone();
                        move || write_atomic(&path, &[i as u8; 4096])
                    })
                })
                .collect();
            for handle in handles {
                handle.join().unwrap().expect("every writer succeeds");
            }
        });
        assert_eq!(std::fs::read(&path).unwrap().len(), 4096);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "no temporary is left");
    }

    #[test]
    fn copies_onto_themselves_keep_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("index.html");
        std::fs::write(&file, "<!doctype html>").unwrap();
        copy_file(&file, &dir.path().join("./index.html")).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "<!doctype html>");
        std::fs::create_dir_all(dir.path().join("www/pkg")).unwrap();
        std::fs::write(dir.path().join("www/pkg/a.wasm"), b"\0asm").unwrap();
        copy_dir(&dir.path().join("www"), &dir.path().join("www/../www")).unwrap();
        assert_eq!(std::fs::read(dir.path().join("www/pkg/a.wasm")).unwrap(), b"\0asm");
        // A destination inside the source is not copied into itself forever.
        copy_dir(&dir.path().join("www"), &dir.path().join("www/site/www")).unwrap();
        assert!(dir.path().join("www/site/www/pkg/a.wasm").is_file());
        assert!(!dir.path().join("www/site/www/site").exists());
    }

    #[cfg(unix)]
    #[test]
    fn links_are_not_followed_into_the_copy() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret.txt");
        std::fs::write(&secret, "private").unwrap();
        std::fs::create_dir_all(dir.path().join("www")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("www/leak.txt")).unwrap();
        copy_dir(&dir.path().join("www"), &dir.path().join("out")).unwrap();
        assert!(!dir.path().join("out/leak.txt").exists());
    }
}
