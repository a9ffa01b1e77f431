//! A site CA for TLS tests, made with the script README tells site owners to use
//! (`gateway/deploy/tls/site-certs.sh`, openssl underneath), so the tests exercise exactly the
//! certificates a site gets; and rustls client settings for test clients.

use crate::HarnessError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The site-certs script of the repository.
pub fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../gateway/deploy/tls/site-certs.sh")
}

/// A site CA in a temporary directory, with a gateway certificate for 127.0.0.1 and localhost.
#[derive(Debug)]
pub struct SiteCerts {
    dir: tempfile::TempDir,
}

impl SiteCerts {
    /// Makes the CA (named `name`) and the gateway certificate.
    pub fn create(name: &str) -> Result<Self, HarnessError> {
        let dir = tempfile::Builder::new()
            .prefix("site-certs-")
            .tempdir()
            .map_err(|e| HarnessError::io("creating a temp dir", e))?;
        let certs = Self { dir };
        certs.run(&["ca", name])?;
        certs.run(&["gateway", "localhost", "127.0.0.1"])?;
        Ok(certs)
    }

    fn run(&self, args: &[&str]) -> Result<(), HarnessError> {
        let mut command = Command::new("bash");
        command
            .arg(script())
            .arg(args[0])
            .arg(self.dir.path())
            .args(&args[1..]);
        let out = command.output().map_err(|e| {
            HarnessError::Setup(format!(
                "cannot run bash {} (openssl is needed: tests/install-prerequisites installs it): {e}",
                script().display()
            ))
        })?;
        if !out.status.success() {
            return Err(HarnessError::Setup(format!(
                "site-certs.sh {args:?} failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )));
        }
        Ok(())
    }

    /// Issues a certificate for `device`, valid for `days` (-1: already expired); returns its
    /// certificate and key files.
    pub fn device(&self, device: &str, days: i32) -> Result<(PathBuf, PathBuf), HarnessError> {
        self.run(&["device", device, &days.to_string()])?;
        Ok(self.device_files(device))
    }

    /// The certificate and key files of `device`.
    pub fn device_files(&self, device: &str) -> (PathBuf, PathBuf) {
        let d = self.dir.path().join("devices");
        (
            d.join(format!("{device}.crt")),
            d.join(format!("{device}.key")),
        )
    }

    /// devsim's `--cert` and `--key` for certificates issued here (`{id}` = the device ID).
    pub fn device_template(&self) -> (String, String) {
        let d = self.dir.path().join("devices");
        (
            format!("{}/{{id}}.crt", d.display()),
            format!("{}/{{id}}.key", d.display()),
        )
    }

    /// The gateway's certificate and key (also a TLS server certificate for another broker).
    pub fn gateway_files(&self) -> (PathBuf, PathBuf) {
        (
            self.dir.path().join("gateway.crt"),
            self.dir.path().join("gateway.key"),
        )
    }

    /// Revokes every certificate of `device` and rewrites [`Self::crl`].
    pub fn revoke(&self, device: &str) -> Result<(), HarnessError> {
        self.run(&["revoke", device])
    }

    /// Issues a new gateway certificate (same names), replacing the files in place.
    pub fn renew_gateway(&self) -> Result<(), HarnessError> {
        self.run(&["gateway", "localhost", "127.0.0.1"])
    }

    /// The CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// The certificate revocation list.
    pub fn crl(&self) -> PathBuf {
        self.dir.path().join("crl.pem")
    }

    /// `[ingest.embedded.tls]` settings for this site (after the listen address), with device
    /// certificates `required` or `optional`, or none (`client_certificates = None`).
    pub fn gateway_toml(&self, client_certificates: Option<&str>) -> String {
        let dir = self.dir.path().display();
        let mut toml =
            format!("cert_file = \"{dir}/gateway.crt\"\nkey_file = \"{dir}/gateway.key\"\n");
        if let Some(mode) = client_certificates {
            toml.push_str(&format!(
                "client_ca_file = \"{dir}/ca.crt\"\ncrl_file = \"{dir}/crl.pem\"\nclient_certificates = \"{mode}\"\n"
            ));
        }
        toml
    }
}

fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, HarnessError> {
    CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| HarnessError::Setup(format!("reading {}: {e}", path.display())))
}

/// rustls client settings that trust the CA in `ca` and show `client` (certificate and key
/// files) if given.
pub fn client_tls(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, HarnessError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_pem_certs(ca)? {
        roots
            .add(cert)
            .map_err(|e| HarnessError::Setup(format!("CA {}: {e}", ca.display())))?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| HarnessError::Setup(e.to_string()))?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let key = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| HarnessError::Setup(format!("key {}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(read_pem_certs(cert)?, key)
                .map_err(|e| HarnessError::Setup(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}
