//! Editing Mosquitto-format password files (`user:hash` lines); backs the
//! `portcullis passwd` command.
//!
//! Other lines, comments and line endings are kept as they are. The new
//! file is written next to the old one and renamed over it, so a reader
//! (the broker reloading) sees the old file or the new one, never half of
//! one. A new file gets mode 0600; an existing file keeps its mode and,
//! where permitted, its owner. Two editors at once can still lose one
//! update: there is no lock.
//!
//! With [`NewHash::Pbkdf2Sha512`] the lines are exactly what
//! `mosquitto_passwd` writes (`$7$101$<12-byte salt>$<64-byte key>`), so
//! Mosquitto can read the file too.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::hash::{hash_password, HashError, NewHash};

/// MQTT strings are at most 65535 bytes.
const MAX_USERNAME: usize = 65_535;

#[derive(Debug, thiserror::Error)]
pub enum PasswdError {
    #[error("invalid username: {0}")]
    InvalidUsername(&'static str),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Hash(#[from] HashError),
}

/// Usernames must survive the `user:hash` line format unchanged.
pub fn validate_username(username: &str) -> Result<(), PasswdError> {
    let problem = if username.is_empty() {
        "empty"
    } else if username.len() > MAX_USERNAME {
        "longer than 65535 bytes"
    } else if username.contains(':') {
        "contains ':'"
    } else if username.chars().any(char::is_control) {
        "contains a newline or other control character"
    } else if username.starts_with('#') {
        "starts with '#' (would read as a comment)"
    } else if username.trim() != username {
        "has leading or trailing whitespace"
    } else {
        return Ok(());
    };
    Err(PasswdError::InvalidUsername(problem))
}

/// Sets `username`'s password: replaces its line, or appends one; creates
/// the file (mode 0600) when missing. Hashing is slow by design (Argon2id,
/// bcrypt): do not call this on an async thread.
pub fn set_password(path: &Path, username: &str, password: &[u8], algo: NewHash) -> Result<(), PasswdError> {
    validate_username(username)?;
    let hash = hash_password(password, algo)?;
    let target = resolve(path)?;
    let existing = read_existing(&target)?;
    let content = existing.as_ref().map_or("", |(text, _)| text.as_str());
    let updated = upsert(content, username, &hash);
    write_atomic(&target, updated.as_bytes(), existing.as_ref().map(|(_, meta)| meta))
}

/// Removes `username`'s line. `Ok(false)` (and the file untouched) when the
/// user is not there; an error when the file is missing.
pub fn delete_user(path: &Path, username: &str) -> Result<bool, PasswdError> {
    validate_username(username)?;
    let target = resolve(path)?;
    let Some((content, meta)) = read_existing(&target)? else {
        return Err(PasswdError::Io { path: target, source: io::ErrorKind::NotFound.into() });
    };
    match remove(&content, username) {
        Some(updated) => write_atomic(&target, updated.as_bytes(), Some(&meta)).map(|()| true),
        None => Ok(false),
    }
}

/// The file a symlink points to (so the link survives), or `path` itself.
fn resolve(path: &Path) -> Result<PathBuf, PasswdError> {
    match fs::canonicalize(path) {
        Ok(p) => Ok(p),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(path.to_path_buf()),
        Err(source) => Err(PasswdError::Io { path: path.to_path_buf(), source }),
    }
}

fn read_existing(path: &Path) -> Result<Option<(String, fs::Metadata)>, PasswdError> {
    let io_err = |source| PasswdError::Io { path: path.to_path_buf(), source };
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(e)),
    };
    let meta = fs::metadata(path).map_err(io_err)?;
    let text = String::from_utf8(bytes).map_err(|_| io_err(io::Error::new(io::ErrorKind::InvalidData, "not UTF-8")))?;
    Ok(Some((text, meta)))
}

/// Whether `line` (without its ending) is `username`'s entry, read the way
/// the `password_file` provider reads it.
fn is_entry_for(line: &str, username: &str) -> bool {
    let t = line.trim();
    !t.starts_with('#') && t.split_once(':').is_some_and(|(user, _)| user.trim() == username)
}

fn split_ending(line: &str) -> (&str, &str) {
    if let Some(body) = line.strip_suffix("\r\n") {
        (body, "\r\n")
    } else if let Some(body) = line.strip_suffix('\n') {
        (body, "\n")
    } else {
        (line, "")
    }
}

/// Replaces the first entry for `username` (dropping any later duplicates)
/// or appends one.
fn upsert(content: &str, username: &str, hash: &str) -> String {
    let entry = format!("{username}:{hash}");
    let mut out = String::with_capacity(content.len() + entry.len() + 2);
    let mut replaced = false;
    for line in content.split_inclusive('\n') {
        let (body, ending) = split_ending(line);
        if is_entry_for(body, username) {
            if !replaced {
                out.push_str(&entry);
                out.push_str(if ending.is_empty() { "\n" } else { ending });
                replaced = true;
            }
        } else {
            out.push_str(line);
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with('\n') {
            out.push('\n');
        }
        out.push_str(&entry);
        out.push('\n');
    }
    out
}

/// `content` without `username`'s entries; `None` when there were none.
fn remove(content: &str, username: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(content.len());
    for line in content.split_inclusive('\n') {
        if is_entry_for(split_ending(line).0, username) {
            found = true;
        } else {
            out.push_str(line);
        }
    }
    found.then_some(out)
}

/// Writes a temp file in the same directory, syncs it, renames it over
/// `target`. `existing`: the old file's metadata, whose mode (and owner,
/// where permitted) the new file keeps.
fn write_atomic(target: &Path, bytes: &[u8], existing: Option<&fs::Metadata>) -> Result<(), PasswdError> {
    let io_err = |source| PasswdError::Io { path: target.to_path_buf(), source };
    let dir = match target.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Some(file_name) = target.file_name() else {
        return Err(io_err(io::Error::new(io::ErrorKind::InvalidInput, "not a file path")));
    };
    let tmp = dir.join(format!(".{}.tmp-{:016x}", file_name.to_string_lossy(), rand::random::<u64>()));
    let result = write_then_rename(&tmp, target, dir, bytes, existing);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err)
}

fn write_then_rename(
    tmp: &Path,
    target: &Path,
    dir: &Path,
    bytes: &[u8],
    existing: Option<&fs::Metadata>,
) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(tmp)?;
    file.write_all(bytes)?;
    #[cfg(unix)]
    if let Some(meta) = existing {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        // Best effort: only root may give the file to another owner.
        let _ = std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()));
        file.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
    }
    #[cfg(not(unix))]
    let _ = existing;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, target)?;
    // Make the rename durable; not every platform lets a directory be synced.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::verify;

    fn entry<'a>(content: &'a str, user: &str) -> &'a str {
        content
            .lines()
            .find_map(|l| l.strip_prefix(user).and_then(|r| r.strip_prefix(':')))
            .unwrap_or_else(|| panic!("no line for {user} in {content:?}"))
    }

    #[test]
    fn creates_a_private_file_readable_by_the_provider() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        set_password(&path, "alice", b"correct horse", NewHash::Pbkdf2Sha512).unwrap();
        let content = fs::read_to_string(&path).unwrap();
        assert!(content.starts_with("alice:$7$101$") && content.ends_with('\n'), "{content}");
        assert_eq!(content.lines().count(), 1);
        assert_eq!(verify(b"correct horse", entry(&content, "alice"), None, None), Ok(true));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let p = crate::providers::password_file::PasswordFile::load("pw".into(), &path, None).unwrap();
        assert_eq!(p.len(), 1);
    }

    #[test]
    fn replaces_in_place_and_keeps_everything_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        let before = "# users\r\nalice:old\r\n\n  # bob is next\nbob:$6$x$y\ncarol:keep";
        fs::write(&path, before).unwrap();
        set_password(&path, "alice", b"new one", NewHash::Pbkdf2Sha512).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = after.split('\n').collect();
        assert_eq!(lines[0], "# users\r");
        assert!(lines[1].starts_with("alice:$7$") && lines[1].ends_with('\r'), "CRLF kept: {after:?}");
        assert_eq!(lines[2..], ["", "  # bob is next", "bob:$6$x$y", "carol:keep"]);
        assert_eq!(verify(b"new one", entry(&after, "alice").trim_end(), None, None), Ok(true));

        set_password(&path, "dave", b"pw", NewHash::Pbkdf2Sha512).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        assert!(after.contains("\ncarol:keep\ndave:$7$101$"), "newline added before appending: {after:?}");
        assert!(after.ends_with('\n'));
    }

    #[test]
    fn duplicates_collapse_into_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, "bob:a\n#bob:commented\nbob : b\nzed:c\n").unwrap();
        set_password(&path, "bob", b"pw", NewHash::Pbkdf2Sha512).unwrap();
        let after = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = after.lines().collect();
        assert_eq!(lines.len(), 3, "{after}");
        assert!(lines[0].starts_with("bob:$7$"));
        assert_eq!(lines[1..], ["#bob:commented", "zed:c"]);
    }

    #[test]
    fn delete_removes_only_that_user() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, "# c\nalice:x\nbob:y\n").unwrap();
        assert!(delete_user(&path, "alice").unwrap());
        assert_eq!(fs::read_to_string(&path).unwrap(), "# c\nbob:y\n");
        assert!(!delete_user(&path, "alice").unwrap());
        assert!(!delete_user(&path, "c").unwrap(), "comments are not users");
        assert_eq!(fs::read_to_string(&path).unwrap(), "# c\nbob:y\n");
        assert!(matches!(delete_user(&dir.path().join("missing"), "bob"), Err(PasswdError::Io { .. })));
    }

    #[test]
    fn bad_usernames_are_rejected_before_touching_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        for bad in ["", "a:b", "a\nb", "a\rb", "#root", " bob", "bob\t", "nul\0"] {
            let e = set_password(&path, bad, b"pw", NewHash::Pbkdf2Sha512).unwrap_err();
            assert!(matches!(e, PasswdError::InvalidUsername(_)), "{bad:?}: {e}");
            assert!(matches!(delete_user(&path, bad), Err(PasswdError::InvalidUsername(_))), "{bad:?}");
        }
        assert!(!path.exists());
        set_password(&path, "ünïcode user@example", b"pw", NewHash::Pbkdf2Sha512).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn existing_mode_is_kept_and_no_temp_file_is_left() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("passwd");
        fs::write(&path, "x:y\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        set_password(&path, "x", b"pw", NewHash::Pbkdf2Sha512).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o640);
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["passwd"]);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_followed_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        let link = dir.path().join("link");
        fs::write(&real, "a:b\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        set_password(&link, "c", b"pw", NewHash::Pbkdf2Sha512).unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert!(fs::read_to_string(&real).unwrap().contains("\nc:$7$"));
    }

    #[test]
    fn errors_never_show_the_password() {
        let e = set_password(Path::new("/nonexistent-dir/passwd"), "bob", b"hunter2", NewHash::Bcrypt).unwrap_err();
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains("hunter2") && shown.contains("/nonexistent-dir/passwd"), "{shown}");
        let e = set_password(Path::new("x"), "bob", &[b'h'; 80], NewHash::Bcrypt).unwrap_err();
        assert!(matches!(e, PasswdError::Hash(HashError::PasswordTooLong { .. })));
    }
}
