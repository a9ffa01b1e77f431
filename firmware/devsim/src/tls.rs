//! `--tls`: each simulated device runs the core's own TLS connector
//! (`sensor_node_core::tls`, embedded-tls), the code path the boards use; only the files
//! are read differently (PEM files here, build-time settings on a board).
//!
//! Certificates: `--ca FILE` is the site CA the device trusts to sign the gateway's
//! certificate; `--cert FILE --key FILE` give a device certificate to log in with, where
//! `{id}` in a path stands for the device ID (`--cert site/devices/{id}.crt` as
//! `site-certs.sh` lays them out), so every simulated device shows its own certificate.

use anyhow::{Context, bail};
use p256::pkcs8::DecodePrivateKey as _;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use sensor_node_core::tls::{CaKey, DeviceCredentials, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Checked TLS settings shared by all devices.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    ca: CaKey,
    /// Certificate and key path templates (`{id}` = the device ID).
    client: Option<(String, String)>,
    server_name: String,
}

/// The first certificate of a PEM file, in DER.
fn read_certificate(path: &Path) -> anyhow::Result<Vec<u8>> {
    let cert = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .next()
        .with_context(|| format!("no PEM certificate in {}", path.display()))?
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(cert.to_vec())
}

/// A P-256 private key from PEM (PKCS#8 as `openssl genpkey` writes it, or SEC1).
fn read_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let pem = std::fs::read_to_string(path)
        .with_context(|| format!("reading the key {}", path.display()))?;
    let key = p256::SecretKey::from_pkcs8_pem(&pem)
        .or_else(|_| p256::SecretKey::from_sec1_pem(&pem))
        .map_err(|_| anyhow::anyhow!("{} is not a P-256 private key (PEM)", path.display()))?;
    Ok(key.to_bytes().into())
}

impl TlsSettings {
    /// Reads the CA; the gateway's certificate must name `server_name`, else the broker's IP.
    pub fn new(
        ca: &Path,
        client: Option<(String, String)>,
        server_name: Option<&str>,
        broker: SocketAddr,
    ) -> anyhow::Result<Self> {
        let ca_der = read_certificate(ca)?;
        let ca = CaKey::from_certificate(&ca_der).map_err(|e| {
            anyhow::anyhow!(
                "{}: not a self-signed P-256 CA certificate ({e:?})",
                ca.display()
            )
        })?;
        let server_name = match server_name {
            Some(name) => name.to_owned(),
            None => broker.ip().to_string(),
        };
        if ServerName::parse(&server_name).is_none() {
            bail!("--server-name must not be empty");
        }
        Ok(Self {
            ca,
            client,
            server_name,
        })
    }

    /// The site CA.
    pub fn ca(&self) -> CaKey {
        self.ca
    }

    /// The name the gateway's certificate must carry.
    pub fn server_name(&self) -> &str {
        &self.server_name
    }

    /// Device `id`'s certificate (DER) and key, if devices log in with certificates.
    pub fn device_files(&self, id: &str) -> anyhow::Result<Option<DeviceFiles>> {
        let Some((cert, key)) = &self.client else {
            return Ok(None);
        };
        let cert = PathBuf::from(cert.replace("{id}", id));
        let key_path = PathBuf::from(key.replace("{id}", id));
        let files = DeviceFiles {
            certificate: read_certificate(&cert)?,
            key: read_key(&key_path)?,
        };
        // Checked once here so a mismatch is a clear error, not a failing handshake.
        files.credentials().map_err(|e| {
            anyhow::anyhow!(
                "{} and {} do not go together ({e:?})",
                cert.display(),
                key_path.display()
            )
        })?;
        Ok(Some(files))
    }
}

/// One device's certificate and key, as a board holds them in flash.
#[derive(Debug)]
pub struct DeviceFiles {
    certificate: Vec<u8>,
    key: [u8; 32],
}

impl DeviceFiles {
    /// The core's view of them.
    pub fn credentials(
        &self,
    ) -> Result<DeviceCredentials<'_>, sensor_node_core::tls::CredentialError> {
        DeviceCredentials::new(&self.certificate, &self.key)
    }
}
