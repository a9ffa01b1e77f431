//! Device login for the embedded broker.
//!
//! rumqttd's built-in user map does not tie a username to a client ID (device B could log in
//! with A's password under any client ID). The gateway installs its own handler instead:
//! with a credentials file, a client must use its device ID as both client ID and username and
//! present that device's password.
//!
//! Passwords are stored as argon2id hashes in PHC string format (salted, slow: [`PARAMS`]),
//! verified in constant time by the `argon2` crate, never logged. Older `sha256:` lines
//! (unsalted, fast) are refused at load with a message saying how to rehash.
//!
//! A slow hash at every CONNECT would cost a Pi ~0.1 s of CPU and ~7 MiB per login, and
//! rumqttd awaits the check on the listener's single thread. So verification runs on the
//! blocking pool, at most [`CONCURRENT_VERIFICATIONS`] at a time, and a login that passed once
//! is remembered (SHA-256 of the stored hash and the password) until the file is reloaded:
//! a device that reconnects costs a SHA-256, not an argon2id.
//!
//! Credentials file (TOML):
//! ```toml
//! [devices]
//! "node-0001" = "$argon2id$v=19$m=7168,t=5,p=1$<salt>$<hash>"
//! ```

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

/// argon2id parameters for new hashes: 7 MiB, 5 passes, 1 lane (one of OWASP's equivalent
/// settings; the lowest memory, for a Pi verifying logins). Verification uses the parameters
/// stored in each hash.
pub const PARAMS: (u32, u32, u32) = (7 * 1024, 5, 1);

/// Slow verifications running at once (each holds its argon2 memory).
pub const CONCURRENT_VERIFICATIONS: usize = 2;

/// Loaded credentials: device ID → its password hash, and the logins already verified.
#[derive(Clone)]
pub struct Credentials {
    devices: Arc<HashMap<String, String>>,
    /// Device → SHA-256(stored hash, password) of a login that passed the slow check.
    verified: Arc<Mutex<HashMap<String, [u8; 32]>>>,
    slow_checks: Arc<tokio::sync::Semaphore>,
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

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct HashError(String);

fn hasher() -> Result<Argon2<'static>, HashError> {
    let (m, t, p) = PARAMS;
    let params = Params::new(m, t, p, None).map_err(|e| HashError(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// The argon2id PHC string for `password` with a fresh random salt: the form the credentials
/// file stores.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    hasher()?
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Checks one stored hash: a PHC string of argon2id (or argon2i/d), else a reason.
fn check_stored(hash: &str) -> Result<(), String> {
    if hash.starts_with("sha256:") {
        return Err(
            "unsalted SHA-256 hashes are no longer accepted: rehash the password with \
                    `telemetry-gateway hash-password DEVICE` (it reads the password from a prompt or \
                    stdin) and replace the line"
                .into(),
        );
    }
    let parsed = PasswordHash::new(hash).map_err(|e| {
        format!("not a PHC password hash ({e}); make one with `telemetry-gateway hash-password`")
    })?;
    if !parsed.algorithm.as_str().starts_with("argon2") {
        return Err(format!(
            "unsupported hash algorithm {:?}: use argon2id (`telemetry-gateway hash-password`)",
            parsed.algorithm.as_str()
        ));
    }
    Ok(())
}

impl Credentials {
    /// Loads and checks a credentials file.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        let text = std::fs::read_to_string(path).map_err(|source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Checks the text of a credentials file (`path` names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, CredentialsError> {
        let parse_error = |message: String| CredentialsError::Parse {
            path: path.to_owned(),
            message,
        };
        let file: CredentialsFile = toml::from_str(text).map_err(|e| parse_error(e.to_string()))?;
        for (id, hash) in &file.devices {
            telemetry_wire::device_id::validate(id)
                .map_err(|e| parse_error(format!("device {id:?}: {e}")))?;
            check_stored(hash).map_err(|e| parse_error(format!("device {id:?}: {e}")))?;
        }
        Ok(Self {
            devices: Arc::new(file.devices),
            verified: Arc::default(),
            slow_checks: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_VERIFICATIONS)),
        })
    }

    /// Whether a client may connect: client ID = username = a listed device, right password.
    pub async fn allows(&self, client_id: &str, username: &str, password: &str) -> bool {
        if client_id != username {
            return false;
        }
        let Some(stored) = self.devices.get(username).cloned() else {
            return false;
        };
        let digest: [u8; 32] = Sha256::new()
            .chain_update(stored.as_bytes())
            .chain_update([0])
            .chain_update(password.as_bytes())
            .finalize()
            .into();
        let remembered = self
            .verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(username)
            .copied();
        if remembered.is_some_and(|known| constant_time_eq(&known, &digest)) {
            return true;
        }
        let Ok(_permit) = self.slow_checks.acquire().await else {
            return false;
        };
        let password = password.to_owned();
        let ok = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|hash| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &hash)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        if ok {
            self.verified
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(username.to_owned(), digest);
        }
        ok
    }

    /// The listed device IDs, sorted.
    pub fn devices(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.devices.keys().map(String::as_str).collect();
        ids.sort_unstable();
        ids
    }

    /// Whether `device` is listed.
    pub fn contains(&self, device: &str) -> bool {
        self.devices.contains_key(device)
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

/// The credentials in force for the broker's login check, replaced by [`DeviceLogins::reload`].
#[derive(Debug)]
pub struct DeviceLogins {
    path: PathBuf,
    current: RwLock<Credentials>,
}

/// What a reload changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reloaded {
    /// Devices listed now.
    pub devices: usize,
    /// Devices that were not listed before.
    pub added: Vec<String>,
    /// Devices removed, or whose password hash changed: their connections must end.
    pub revoked: Vec<String>,
}

impl DeviceLogins {
    /// Loads the credentials file at `path`.
    pub fn load(path: &Path) -> Result<Self, CredentialsError> {
        Ok(Self {
            path: path.to_owned(),
            current: RwLock::new(Credentials::load(path)?),
        })
    }

    /// The credentials in force.
    pub fn current(&self) -> Credentials {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the file again. A file that does not load leaves the credentials in force as they
    /// were. Logins remembered as verified are forgotten.
    pub fn reload(&self) -> Result<Reloaded, CredentialsError> {
        let new = Credentials::load(&self.path)?;
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut revoked: Vec<String> = current
            .devices
            .iter()
            .filter(|(id, hash)| new.devices.get(*id) != Some(*hash))
            .map(|(id, _)| id.clone())
            .collect();
        let mut added: Vec<String> = new
            .devices
            .keys()
            .filter(|id| !current.devices.contains_key(*id))
            .cloned()
            .collect();
        revoked.sort_unstable();
        added.sort_unstable();
        let devices = new.len();
        *current = new;
        Ok(Reloaded {
            devices,
            added,
            revoked,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Equality with no early exit on the first differing byte.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &tempfile::TempDir, text: &str) -> std::path::PathBuf {
        let path = dir.path().join("creds.toml");
        std::fs::write(&path, text).expect("write");
        path
    }

    #[tokio::test]
    async fn ties_client_id_to_username_and_password() {
        let dir = tempfile::tempdir().expect("tempdir");
        let hash = hash_password("secret-a").expect("hashes");
        assert!(hash.starts_with("$argon2id$v=19$m=7168,t=5,p=1$"), "{hash}");
        assert_ne!(hash, hash_password("secret-a").expect("hashes"), "salted");
        let c = Credentials::load(&write(
            &dir,
            &format!("[devices]\n\"dev-a\" = \"{hash}\"\n"),
        ))
        .expect("loads");
        assert!(c.allows("dev-a", "dev-a", "secret-a").await);
        // Again, from the remembered login; a wrong password still fails after it.
        assert!(c.allows("dev-a", "dev-a", "secret-a").await);
        assert!(!c.allows("dev-a", "dev-a", "secret-b").await);
        assert!(
            !c.allows("dev-b", "dev-a", "secret-a").await,
            "client id must equal username"
        );
        assert!(!c.allows("dev-x", "dev-x", "secret-a").await);
    }

    #[test]
    fn a_reload_names_added_and_revoked_devices_and_keeps_the_old_on_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b, b2, c) = (
            hash_password("a").expect("h"),
            hash_password("b").expect("h"),
            hash_password("b2").expect("h"),
            hash_password("c").expect("h"),
        );
        let path = write(
            &dir,
            &format!("[devices]\n\"a\" = \"{a}\"\n\"b\" = \"{b}\"\n"),
        );
        let logins = DeviceLogins::load(&path).expect("loads");
        write(
            &dir,
            &format!("[devices]\n\"b\" = \"{b2}\"\n\"c\" = \"{c}\"\n"),
        );
        let r = logins.reload().expect("reloads");
        assert_eq!(
            r,
            Reloaded {
                devices: 2,
                added: vec!["c".into()],
                revoked: vec!["a".into(), "b".into()],
            }
        );
        write(&dir, "[devices]\n\"a\" = \"plain\"\n");
        assert!(logins.reload().is_err());
        assert_eq!(logins.current().devices(), vec!["b", "c"]);
    }

    #[test]
    fn rejects_bad_files_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let sha = format!("sha256:{}", "0".repeat(64));
        for (text, needle) in [
            (
                "[devices]\n\"a/b\" = \"$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo\"\n"
                    .to_owned(),
                "device \"a/b\"",
            ),
            ("[devices]\n\"a\" = \"plain\"\n".to_owned(), "not a PHC password hash"),
            (
                format!("[devices]\n\"a\" = \"{sha}\"\n"),
                "telemetry-gateway hash-password DEVICE",
            ),
            ("[users]\n".to_owned(), "unknown field"),
        ] {
            let err = Credentials::load(&write(&dir, &text))
                .expect_err("rejected")
                .to_string();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("0000000000"), "no hash in the message: {err}");
        }
    }
}
