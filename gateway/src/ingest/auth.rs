//! Device login for the embedded broker.
//!
//! rumqttd's built-in user map does not tie a username to a client ID (device B could log in
//! with A's password under any client ID). The gateway installs its own handler instead:
//! with a credentials file, a client must use its device ID as both client ID and username and
//! present that device's password. Passwords are stored as SHA-256 hashes.
//!
//! Credentials file (TOML):
//! ```toml
//! [devices]
//! "node-0001" = "sha256:<64 hex digits of SHA-256(password)>"
//! ```

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

/// Loaded credentials: device ID → SHA-256 of its password.
#[derive(Clone, Default)]
pub struct Credentials {
    devices: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("devices", &self.devices.len())
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    devices: HashMap<String, String>,
}

/// Why a credentials file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML of the expected shape.
    #[error("credentials file {path}: {message}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// `sha256:<hex>` for `password`, the form the credentials file stores.
pub fn hash_password(password: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(password.as_bytes()))
    )
}

impl Credentials {
    /// Loads and checks a credentials file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        let parse_error = |message: String| CredentialsError::Parse {
            path: path.to_owned(),
            message,
        };
        let file: CredentialsFile =
            toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        let mut devices = HashMap::new();
        for (id, hash) in file.devices {
            telemetry_wire::device_id::validate(&id)
                .map_err(|e| parse_error(format!("device {id:?}: {e}")))?;
            let digest = hash
                .strip_prefix("sha256:")
                .and_then(|h| hex::decode(h).ok())
                .and_then(|d| <[u8; 32]>::try_from(d).ok())
                .ok_or_else(|| {
                    parse_error(format!(
                        "device {id:?}: expected \"sha256:<64 hex digits>\""
                    ))
                })?;
            devices.insert(id, digest);
        }
        Ok(Self { devices })
    }

    /// Whether a client may connect: client ID = username = a known device, right password.
    pub fn allows(&self, client_id: &str, username: &str, password: &str) -> bool {
        if client_id != username {
            return false;
        }
        let Some(expected) = self.devices.get(username) else {
            return false;
        };
        let actual: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        // Constant-time comparison: no early exit on the first differing byte.
        expected
            .iter()
            .zip(actual.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// True with no devices.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_client_id_to_username_and_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("creds.toml");
        let text = format!("[devices]\n\"dev-a\" = \"{}\"\n", hash_password("secret-a"));
        std::fs::write(&path, text).expect("write");
        let c = Credentials::load(&path).expect("loads");
        assert!(c.allows("dev-a", "dev-a", "secret-a"));
        assert!(
            !c.allows("dev-b", "dev-a", "secret-a"),
            "client id must equal username"
        );
        assert!(!c.allows("dev-a", "dev-a", "secret-b"));
        assert!(!c.allows("dev-x", "dev-x", "secret-a"));
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("creds.toml");
        for (text, needle) in [
            ("[devices]\n\"a/b\" = \"sha256:00\"\n", "device \"a/b\""),
            ("[devices]\n\"a\" = \"plain\"\n", "expected \"sha256:"),
            ("[users]\n", "unknown field"),
        ] {
            std::fs::write(&path, text).expect("write");
            let err = Credentials::load(&path).expect_err("rejected").to_string();
            assert!(err.contains(needle), "{err}");
        }
    }
}
