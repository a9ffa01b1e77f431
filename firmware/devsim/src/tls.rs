//! `--tls`: each simulated device's TCP stream wrapped in TLS before the core's MQTT session
//! runs over it. The MQTT, batching and ack code above is the core's, exactly as on a board;
//! the TLS layer here is rustls on the host (the boards' TLS is the core's embedded-tls
//! connector, see firmware/README.md).
//!
//! Certificates: `--ca FILE` is the CA the device trusts to sign the gateway's certificate;
//! `--cert FILE --key FILE` give a device certificate to log in with, where `{id}` in a path
//! stands for the device ID (`--cert site/devices/{id}.crt` as `site-certs.sh` lays them out),
//! so every simulated device shows its own certificate.

use anyhow::{Context, bail};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Checked TLS settings shared by all devices.
#[derive(Debug, Clone)]
pub struct TlsSettings {
    roots: Arc<rustls::RootCertStore>,
    /// Certificate and key path templates (`{id}` = the device ID).
    client: Option<(String, String)>,
    server_name: ServerName<'static>,
}

fn read_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", path.display()))?;
    if certs.is_empty() {
        bail!("no PEM certificate in {}", path.display());
    }
    Ok(certs)
}

impl TlsSettings {
    /// Reads the CA; the gateway's certificate must name `server_name`, else the broker's IP.
    pub fn new(
        ca: &Path,
        client: Option<(String, String)>,
        server_name: Option<&str>,
        broker: SocketAddr,
    ) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots
                .add(cert)
                .with_context(|| format!("CA certificate in {}", ca.display()))?;
        }
        let server_name = match server_name {
            Some(name) => ServerName::try_from(name.to_owned())
                .with_context(|| format!("--server-name {name:?}"))?,
            None => ServerName::IpAddress(broker.ip().into()),
        };
        Ok(Self {
            roots: Arc::new(roots),
            client,
            server_name,
        })
    }

    /// The client settings of device `id` (its own certificate, if any).
    pub fn connector(&self, id: &str) -> anyhow::Result<DeviceTls> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(self.roots.clone());
        let config = match &self.client {
            Some((cert, key)) => {
                let cert = PathBuf::from(cert.replace("{id}", id));
                let key = PathBuf::from(key.replace("{id}", id));
                let chain = read_certs(&cert)?;
                let key = PrivateKeyDer::from_pem_file(&key)
                    .with_context(|| format!("reading the key {}", key.display()))?;
                builder
                    .with_client_auth_cert(chain, key)
                    .with_context(|| format!("certificate {}", cert.display()))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(DeviceTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name: self.server_name.clone(),
        })
    }
}

/// One device's TLS client.
#[derive(Clone)]
pub struct DeviceTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for DeviceTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl DeviceTls {
    /// Runs the handshake on a connected TCP stream.
    pub async fn handshake(&self, tcp: TcpStream) -> std::io::Result<TlsStream<TcpStream>> {
        self.connector.connect(self.server_name.clone(), tcp).await
    }
}
