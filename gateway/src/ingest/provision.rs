//! `gateway devices add|remove|list`: editing the credentials file safely.
//!
//! Edits are line based so comments, blank lines and the order of the other devices survive:
//! a device's line is `"ID" = "HASH"` in the `[devices]` table. The edited text is checked by
//! the same parser the gateway uses ([`Credentials::parse`]) before it replaces the file,
//! atomically: written to a temporary file beside it (same permissions), synced, renamed over
//! it, the directory synced. A running gateway picks the change up on SIGHUP
//! (`systemctl reload telemetry-gateway`).

use super::auth::{Credentials, CredentialsError};
use std::io::Write as _;
use std::path::Path;

/// Why an edit was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionError {
    /// The device is not in the file.
    #[error("device {0:?} is not in the credentials file")]
    NotListed(String),
    /// The file, as it is or as edited, does not load.
    #[error(transparent)]
    Credentials(#[from] CredentialsError),
    /// Reading or replacing the file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The key of a TOML `key = value` line, if the line is one (quoted or bare key).
fn line_key(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let (key, rest) = match line.chars().next()? {
        quote @ ('"' | '\'') => {
            let end = line[1..].find(quote)? + 1;
            (&line[1..end], &line[end + 1..])
        }
        _ => {
            let end = line.find(|c: char| c.is_whitespace() || c == '=')?;
            (&line[..end], &line[end..])
        }
    };
    rest.trim_start().starts_with('=').then_some(key)
}

/// Whether a line opens a table (`[name]`).
fn is_table_header(line: &str) -> bool {
    line.trim_start().starts_with('[')
}

/// `text` with `device`'s line set to `hash`: replaced in place if present, else added at the
/// end of the `[devices]` table (created if missing).
pub fn with_device(text: &str, device: &str, hash: &str) -> String {
    let new_line = format!("\"{device}\" = \"{hash}\"");
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let mut in_devices = false;
    let mut end_of_devices = None;
    for (i, line) in lines.iter_mut().enumerate() {
        if is_table_header(line) {
            in_devices = line.trim() == "[devices]";
            if in_devices {
                end_of_devices = Some(i + 1);
            }
            continue;
        }
        if in_devices {
            if line_key(line) == Some(device) {
                *line = new_line;
                return joined(lines);
            }
            if !line.trim().is_empty() {
                end_of_devices = Some(i + 1);
            }
        }
    }
    match end_of_devices {
        Some(at) => lines.insert(at, new_line),
        None => {
            if lines.last().is_some_and(|l| !l.trim().is_empty()) {
                lines.push(String::new());
            }
            lines.push("[devices]".into());
            lines.push(new_line);
        }
    }
    joined(lines)
}

/// `text` without `device`'s line, or `None` if it has none.
pub fn without_device(text: &str, device: &str) -> Option<String> {
    let mut in_devices = false;
    let mut found = false;
    let lines: Vec<String> = text
        .lines()
        .filter(|line| {
            if is_table_header(line) {
                in_devices = line.trim() == "[devices]";
                return true;
            }
            let this = in_devices && line_key(line) == Some(device);
            found |= this;
            !this
        })
        .map(str::to_owned)
        .collect();
    found.then(|| joined(lines))
}

fn joined(lines: Vec<String>) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    text
}

fn read(path: &Path) -> Result<String, ProvisionError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(ProvisionError::Io {
            what: "cannot read",
            path: path.to_owned(),
            source,
        }),
    }
}

/// Adds `device` with `hash`, or replaces its hash. Returns true if it was listed before.
pub fn add(path: &Path, device: &str, hash: &str) -> Result<bool, ProvisionError> {
    let text = read(path)?;
    let before = if text.trim().is_empty() {
        false
    } else {
        Credentials::parse(&text, path)?.contains(device)
    };
    replace(path, &with_device(&text, device, hash))?;
    Ok(before)
}

/// Removes `device`.
pub fn remove(path: &Path, device: &str) -> Result<(), ProvisionError> {
    let text = read(path)?;
    Credentials::parse(&text, path)?;
    let edited =
        without_device(&text, device).ok_or_else(|| ProvisionError::NotListed(device.into()))?;
    replace(path, &edited)
}

/// The listed devices, sorted.
pub fn list(path: &Path) -> Result<Vec<String>, ProvisionError> {
    let credentials = Credentials::load(path)?;
    Ok(credentials
        .devices()
        .into_iter()
        .map(str::to_owned)
        .collect())
}

/// Checks `text` and puts it in place of `path` atomically, keeping the file's permissions
/// (0600 for a new file: it holds password hashes).
fn replace(path: &Path, text: &str) -> Result<(), ProvisionError> {
    Credentials::parse(text, path)?;
    let io = |what: &'static str| {
        move |source| ProvisionError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut temp = tempfile::Builder::new()
        .prefix(".credentials-")
        .tempfile_in(dir)
        .map_err(io("cannot create a temporary file beside"))?;
    let permissions = match std::fs::metadata(path) {
        Ok(m) => m.permissions(),
        Err(_) => {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::Permissions::from_mode(0o600)
        }
    };
    std::fs::set_permissions(temp.path(), permissions).map_err(io("cannot set permissions"))?;
    temp.write_all(text.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(io("cannot write"))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .map_err(io("cannot replace"))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("cannot sync the directory of"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "# Site devices\n[devices]\n# the boiler room\n\"a\" = \"H1\"\nb = \"H2\"\n\n[other]\nx = 1\n";

    #[test]
    fn adding_keeps_comments_and_order() {
        let added = with_device(FILE, "c", "H3");
        assert_eq!(
            added,
            "# Site devices\n[devices]\n# the boiler room\n\"a\" = \"H1\"\nb = \"H2\"\n\"c\" = \"H3\"\n\n[other]\nx = 1\n"
        );
        let replaced = with_device(FILE, "b", "H9");
        assert!(replaced.contains("\"b\" = \"H9\"\n") && !replaced.contains("H2"));
        assert!(replaced.contains("# the boiler room"));
        assert_eq!(
            with_device("# empty\n", "a", "H"),
            "# empty\n\n[devices]\n\"a\" = \"H\"\n"
        );
    }

    #[test]
    fn removing_takes_only_that_line() {
        let removed = without_device(FILE, "a").expect("listed");
        assert_eq!(
            removed,
            "# Site devices\n[devices]\n# the boiler room\nb = \"H2\"\n\n[other]\nx = 1\n"
        );
        assert_eq!(without_device(FILE, "x"), None, "x is not in [devices]");
        assert_eq!(without_device(FILE, "zz"), None);
    }

    #[test]
    fn edits_replace_the_file_checked_and_keep_its_mode() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("devices.toml");
        let hash = super::super::auth::hash_password("pw").expect("hashes");
        assert!(!add(&path, "dev-1", &hash).expect("adds"));
        let mode = std::fs::metadata(&path)
            .expect("exists")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(add(&path, "dev-1", &hash).expect("replaces"));
        add(&path, "dev-2", &hash).expect("adds");
        assert_eq!(list(&path).expect("lists"), vec!["dev-1", "dev-2"]);
        remove(&path, "dev-1").expect("removes");
        assert_eq!(list(&path).expect("lists"), vec!["dev-2"]);
        assert!(matches!(
            remove(&path, "dev-1"),
            Err(ProvisionError::NotListed(_))
        ));
        // A hash the gateway would refuse never reaches the file.
        assert!(add(&path, "dev-3", "sha256:00").is_err());
        assert_eq!(list(&path).expect("lists"), vec!["dev-2"]);
    }
}
