//! Reading secrets kept in files (passwords, tokens, signing keys): the
//! text without its trailing newline, and a warning when the file can be
//! read by other users than its owner (on Unix, any group or other bit).

use std::path::Path;

/// The secret in `path`, and a warning to log when its permissions are
/// looser than 0600.
pub fn read(path: &Path) -> std::io::Result<(String, Option<String>)> {
    let text = std::fs::read_to_string(path)?;
    Ok((text.trim_end_matches(['\r', '\n']).to_string(), loose(path)))
}

/// A warning when `path` is readable or writable by its group or others.
pub fn loose(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        (mode & 0o077 != 0).then(|| {
            format!(
                "{} holds a secret but is {:o} (readable by others than its owner): chmod 600 it",
                path.display(),
                mode & 0o777
            )
        })
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// Restrict `path` to its owner (0600); a no-op where there are no Unix
/// permissions.
pub fn restrict(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loose_secret_file_is_read_with_a_warning_a_tight_one_without() {
        let dir = match tempfile::tempdir() {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        let p = dir.path().join("token");
        std::fs::write(&p, "s3cret\n").unwrap_or_else(|e| panic!("{e}"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                .unwrap_or_else(|e| panic!("{e}"));
            let (text, warn) = read(&p).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(text, "s3cret");
            let warn = warn.unwrap_or_default();
            assert!(warn.contains("644") && warn.contains("chmod 600"), "{warn}");
        }
        restrict(&p).unwrap_or_else(|e| panic!("{e}"));
        let (text, warn) = read(&p).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((text.as_str(), warn), ("s3cret", None));
    }
}
