//! How the gateway logs in to an external broker: TLS (the broker's CA, an optional client
//! certificate) and a username and password from the environment, a file, or the config, in
//! that order of precedence, so the secret need not sit in the often world-readable main config.

use super::config::ExternalConfig;
use super::tls::{TlsSetupError, file_error, read_certificates};
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::sync::Arc;

/// Overrides `ingest.external.username`.
pub const USERNAME_ENV: &str = "GATEWAY_EXTERNAL_USERNAME";
/// Overrides `ingest.external.password` and `password_file`.
pub const PASSWORD_ENV: &str = "GATEWAY_EXTERNAL_PASSWORD";

/// A username and password to log in with.
#[derive(Clone, PartialEq, Eq)]
pub struct Login {
    /// The username.
    pub username: String,
    /// The password.
    pub password: String,
    /// Where the password came from (for the log; never the password itself).
    pub password_source: &'static str,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("username", &self.username)
            .field("password_source", &self.password_source)
            .finish_non_exhaustive()
    }
}

/// The login for `config`, with the environment read through `env`.
pub fn login(
    config: &ExternalConfig,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<Login>, TlsSetupError> {
    let username = env(USERNAME_ENV).or_else(|| config.username.clone());
    let password = match (env(PASSWORD_ENV), &config.password_file, &config.password) {
        (Some(p), _, _) => Some((p, PASSWORD_ENV)),
        (None, Some(path), _) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| file_error("ingest.external.password_file", path, e))?;
            let line = text.lines().next().unwrap_or_default().to_owned();
            if line.is_empty() {
                return Err(file_error(
                    "ingest.external.password_file",
                    path,
                    "the first line (the password) is empty",
                ));
            }
            Some((line, "ingest.external.password_file"))
        }
        (None, None, Some(p)) => Some((p.clone(), "ingest.external.password")),
        (None, None, None) => None,
    };
    match (username, password) {
        (None, None) => Ok(None),
        (Some(username), password) => {
            let (password, password_source) = password.unwrap_or((String::new(), "none"));
            Ok(Some(Login {
                username,
                password,
                password_source,
            }))
        }
        (None, Some((_, source))) => Err(TlsSetupError::Setting {
            setting: "ingest.external.username",
            detail: format!("a password is given ({source}) but no username"),
        }),
    }
}

/// The rustls client settings for a TLS connection to the broker, if `tls = true`.
pub fn tls(config: &ExternalConfig) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
    if !config.tls {
        return Ok(None);
    }
    let mut roots = RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            for ca in read_certificates("ingest.external.ca_file", path)? {
                roots
                    .add(ca)
                    .map_err(|e| file_error("ingest.external.ca_file", path, e))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(file_error(
                    "ingest.external.ca_file",
                    std::path::Path::new("(system CA certificates)"),
                    "none found; set ca_file to the CA that signs the broker's certificate",
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let client = match (&config.cert_file, &config.key_file) {
        (Some(cert_path), Some(key_path)) => {
            let chain = read_certificates("ingest.external.cert_file", cert_path)?;
            let key = PrivateKeyDer::from_pem_file(key_path)
                .map_err(|e| file_error("ingest.external.key_file", key_path, e))?;
            builder.with_client_auth_cert(chain, key)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Arc::new(client)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ExternalConfig {
        ExternalConfig {
            username: Some("from-config".into()),
            password: Some("config-secret".into()),
            ..ExternalConfig::default()
        }
    }

    #[test]
    fn the_environment_overrides_the_file_which_overrides_the_config() {
        let none = |_: &str| None;
        let from_config = login(&config(), none).unwrap().unwrap();
        assert_eq!(from_config.username, "from-config");
        assert_eq!(from_config.password, "config-secret");

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "file-secret\nignored\n").unwrap();
        let with_file = ExternalConfig {
            password: None,
            password_file: Some(file),
            ..config()
        };
        let from_file = login(&with_file, none).unwrap().unwrap();
        assert_eq!(from_file.password, "file-secret");

        let env = |k: &str| match k {
            USERNAME_ENV => Some("env-user".to_owned()),
            PASSWORD_ENV => Some("env-secret".to_owned()),
            _ => None,
        };
        let from_env = login(&with_file, env).unwrap().unwrap();
        assert_eq!(
            (from_env.username.as_str(), from_env.password.as_str()),
            ("env-user", "env-secret")
        );
        assert!(!format!("{from_env:?}").contains("secret"));
    }

    #[test]
    fn a_password_without_a_username_is_an_error_and_nothing_is_no_login() {
        let anonymous = ExternalConfig::default();
        assert_eq!(login(&anonymous, |_| None).unwrap(), None);
        let env = |k: &str| (k == PASSWORD_ENV).then(|| "x".to_owned());
        assert!(login(&anonymous, env).is_err());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let c = ExternalConfig {
            tls: true,
            ca_file: Some("/nonexistent/ca.crt".into()),
            ..ExternalConfig::default()
        };
        let err = tls(&c).unwrap_err().to_string();
        assert!(err.contains("ingest.external.ca_file"), "{err}");
    }
}
