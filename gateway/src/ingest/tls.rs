//! MQTT over TLS on the embedded broker (`[ingest.embedded.tls]`).
//!
//! rustls (TLS 1.3 and 1.2, the aws-lc-rs provider the AWS SDK already brings) behind the
//! patched broker's handshake hook (`gateway/vendor/rumqttd/src/transport.rs`): every handshake
//! runs in its connection's own task within the connection timeout, so a client that connects
//! and says nothing, or says it slowly, holds one connection slot and delays nobody.
//!
//! Identity: with `client_ca_file`, a device may prove who it is with a certificate signed by
//! that CA (and not revoked by `crl_file`). Its device ID is the certificate's subject common
//! name, or its first DNS name when it has no CN; the broker's policy then requires the MQTT
//! client ID to be exactly that ID (refused `certificate_mismatch` otherwise) and asks no
//! password. A client without a certificate (`client_certificates = "optional"`) logs in with a
//! password as on the plain listeners.
//!
//! Reload (SIGHUP): the files are read again and new handshakes use them; live connections keep
//! their sessions, except devices logged in with a certificate the new CA or CRL refuses
//! (a revoked board), which are disconnected. A set of files that does not load changes
//! nothing and says why.
//!
//! Invariant: every handshake is counted once in `gateway_ingest_tls_handshakes_total{result}`,
//! as `ok` or a failure reason; failures are logged, at most [`super::log_limit`]'s lines per
//! window.

use super::config::{ClientCertificates, TlsConfig};
use super::log_limit::LogLimit;
use super::metrics::IngestMetrics;
use rumqttd::transport::{Accepted, Handshake, HandshakeFuture, Stream};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::{CertificateError, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A gateway certificate that expires sooner than this is warned about at every (re)load.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);

/// The TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// A file is missing, unreadable or holds nothing usable.
    #[error("{setting} {path}: {detail}")]
    File {
        /// The setting that names the file, in full (`ingest.embedded.tls.cert_file`).
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// rustls refused the combination (e.g. a key that does not match the certificate).
    #[error("TLS settings: {0}")]
    Rustls(#[from] rustls::Error),
    /// Settings that do not go together.
    #[error("{setting}: {detail}")]
    Setting {
        /// The setting, in full.
        setting: &'static str,
        /// What is wrong.
        detail: String,
    },
}

pub(crate) fn file_error(
    setting: &'static str,
    path: &Path,
    detail: impl ToString,
) -> TlsSetupError {
    TlsSetupError::File {
        setting,
        path: path.to_owned(),
        detail: detail.to_string(),
    }
}

/// Reads every PEM certificate of `path`; at least one.
pub(crate) fn read_certificates(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(setting, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(setting, path, e))?;
    if certs.is_empty() {
        return Err(file_error(setting, path, "no PEM certificate in the file"));
    }
    Ok(certs)
}

fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsSetupError> {
    let crls = CertificateRevocationListDer::pem_file_iter(path)
        .map_err(|e| file_error("ingest.embedded.tls.crl_file", path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error("ingest.embedded.tls.crl_file", path, e))?;
    if crls.is_empty() {
        return Err(file_error(
            "ingest.embedded.tls.crl_file",
            path,
            "no PEM X509 CRL in the file",
        ));
    }
    Ok(crls)
}

/// What a (re)load produced: the rustls settings, the device certificate verifier in them
/// (if any) and when the gateway certificate expires.
struct Loaded {
    server: Arc<ServerConfig>,
    verifier: Option<Arc<dyn ClientCertVerifier>>,
    not_after: i64,
}

/// Builds the rustls server settings from the files `config` names.
fn load(config: &TlsConfig) -> Result<Loaded, TlsSetupError> {
    let (Some(cert_path), Some(key_path)) = (&config.cert_file, &config.key_file) else {
        return Err(file_error(
            "ingest.embedded.tls.cert_file",
            Path::new(""),
            "cert_file and key_file are both needed",
        ));
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let chain = read_certificates("ingest.embedded.tls.cert_file", cert_path)?;
    let not_after = x509_parser::parse_x509_certificate(&chain[0])
        .map_err(|e| file_error("ingest.embedded.tls.cert_file", cert_path, e))?
        .1
        .validity()
        .not_after
        .timestamp();
    let key = PrivateKeyDer::from_pem_file(key_path)
        .map_err(|e| file_error("ingest.embedded.tls.key_file", key_path, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let verifier = match &config.client_ca_file {
        None => None,
        Some(ca_path) => Some(client_verifier(config, ca_path, &provider)?),
    };
    let builder = match &verifier {
        None => builder.with_no_client_auth(),
        Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
    };
    let mut server = builder.with_single_cert(chain, key).map_err(|e| {
        file_error(
            "ingest.embedded.tls.key_file",
            key_path,
            format!(
                "not usable with the certificate in {}: {e}",
                cert_path.display()
            ),
        )
    })?;
    // For microcontrollers (embedded-tls, no_std): it cannot reassemble a handshake message
    // split over records and sizes its receive buffer by our largest record, so records stay
    // at most TLS_MAX_FRAGMENT bytes (the whole encrypted handshake flight with a P-256
    // leaf certificate is ~1 KiB). Session tickets would only cost memory here and traffic
    // there: devices do not resume sessions.
    server.max_fragment_size = Some(telemetry_wire::limits::TLS_MAX_FRAGMENT);
    server.send_tls13_tickets = 0;
    Ok(Loaded {
        server: Arc::new(server),
        verifier,
        not_after,
    })
}

/// Accepts device certificates signed by a CA of `ca_path` and not revoked by `crl_file`.
fn client_verifier(
    config: &TlsConfig,
    ca_path: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for ca in read_certificates("ingest.embedded.tls.client_ca_file", ca_path)? {
        roots
            .add(ca)
            .map_err(|e| file_error("ingest.embedded.tls.client_ca_file", ca_path, e))?;
    }
    let mut verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(crl_path) = &config.crl_file {
        // The CRL comes from the site CA and speaks for the device certificates it signed.
        verifier = verifier
            .with_crls(read_crls(crl_path)?)
            .only_check_end_entity_revocation();
    }
    if config.client_certificates == ClientCertificates::Optional {
        verifier = verifier.allow_unauthenticated();
    }
    verifier
        .build()
        .map_err(|e| file_error("ingest.embedded.tls.client_ca_file", ca_path, e))
}

/// The device ID a certificate names: its subject CN, else its first DNS name.
pub fn certificate_device(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert).ok()?;
    if let Some(cn) = x509.subject().iter_common_name().next() {
        return cn.as_str().ok().map(str::to_owned);
    }
    let san = x509.subject_alternative_name().ok()??;
    san.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns) => Some((*dns).to_owned()),
        _ => None,
    })
}

/// A short, stable label for why a handshake failed.
fn failure_reason(error: &io::Error) -> &'static str {
    let Some(tls) = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return match error.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => "closed",
            _ => "io",
        };
    };
    match tls {
        rustls::Error::InvalidCertificate(e) => match e {
            CertificateError::Expired | CertificateError::ExpiredContext { .. } => "expired",
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                "not_yet_valid"
            }
            CertificateError::Revoked => "revoked",
            CertificateError::UnknownIssuer => "unknown_issuer",
            _ => "bad_certificate",
        },
        rustls::Error::NoCertificatesPresented => "no_certificate",
        // The client refused the handshake, typically because it does not trust the gateway's
        // certificate (a wrong CA on the device).
        rustls::Error::AlertReceived(_) => "client_alert",
        rustls::Error::PeerIncompatible(_) => "incompatible",
        _ => "protocol",
    }
}

/// The TLS handshake of the embedded broker's TLS listeners.
#[derive(Debug)]
pub struct TlsHandshake {
    config: TlsConfig,
    current: RwLock<Arc<ServerConfig>>,
    /// The certificate each device last logged in with, so a reload can tell which logged-in
    /// devices the new CA or CRL no longer accepts. One entry per device ID (~0.6 KB); an
    /// entry may outlive its connection (disconnecting an absent client does nothing).
    certified: Arc<Mutex<HashMap<String, CertificateDer<'static>>>>,
    metrics: IngestMetrics,
    log: Arc<LogLimit>,
}

impl TlsHandshake {
    /// Loads the files `config` names.
    pub fn load(config: &TlsConfig, metrics: IngestMetrics) -> Result<Self, TlsSetupError> {
        let loaded = load(config)?;
        let handshake = Self {
            config: config.clone(),
            current: RwLock::new(loaded.server.clone()),
            certified: Arc::new(Mutex::new(HashMap::new())),
            metrics,
            log: Arc::new(LogLimit::default()),
        };
        handshake.loaded(&loaded);
        Ok(handshake)
    }

    /// Reads the files again; on success new handshakes use them and live connections keep
    /// their sessions, except those of devices whose certificate the new CA and CRL no longer
    /// accept (revoked, expired, another CA): their IDs are returned, to be disconnected (they
    /// may then log in again only as the new files allow).
    pub fn reload(&self) -> Result<Vec<String>, TlsSetupError> {
        match load(&self.config) {
            Ok(loaded) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.server.clone();
                self.loaded(&loaded);
                self.metrics.tls_reloads.inc();
                let now = rustls_pki_types::UnixTime::now();
                let mut certified = self.certified.lock().unwrap_or_else(|e| e.into_inner());
                let refused: Vec<String> = certified
                    .iter()
                    .filter(|(_, cert)| match &loaded.verifier {
                        Some(v) => v.verify_client_cert(cert, &[], now).is_err(),
                        None => true, // no device certificates any more
                    })
                    .map(|(device, _)| device.clone())
                    .collect();
                for device in &refused {
                    certified.remove(device);
                }
                Ok(refused)
            }
            Err(e) => {
                self.metrics.tls_reload_failures.inc();
                Err(e)
            }
        }
    }

    /// Publishes and checks the expiry of a freshly loaded gateway certificate.
    fn loaded(&self, loaded: &Loaded) {
        self.metrics.tls_certificate_expiry.set(loaded.not_after);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let left = loaded.not_after - now;
        let cert = self.config.cert_file.as_deref().unwrap_or(Path::new(""));
        if left <= 0 {
            tracing::error!(file = %cert.display(), "The gateway's TLS certificate has expired: devices will refuse it.");
        } else if left < EXPIRY_WARNING.as_secs() as i64 {
            tracing::warn!(file = %cert.display(), days_left = left / 86_400, "The gateway's TLS certificate expires soon.");
        } else {
            tracing::info!(file = %cert.display(), days_left = left / 86_400, client_certificates = self.config.client_ca_file.is_some(), "TLS certificate loaded.");
        }
    }

    /// When the gateway's certificate expires (Unix seconds), as last loaded.
    pub fn certificate_expiry(&self) -> i64 {
        self.metrics.tls_certificate_expiry.get()
    }

    fn server_config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Handshake for TlsHandshake {
    fn accept(&self, stream: Box<dyn Stream>) -> HandshakeFuture {
        let acceptor = tokio_rustls::TlsAcceptor::from(self.server_config());
        let (metrics, log) = (self.metrics.clone(), self.log.clone());
        let certified = self.certified.clone();
        Box::pin(async move {
            let result = match acceptor.accept(stream).await {
                Ok(tls) => {
                    let certificate = tls.get_ref().1.peer_certificates().and_then(|c| c.first());
                    match certificate.map(certificate_device) {
                        // The verifier accepted a certificate that names no one.
                        Some(None) => Err((
                            io::Error::new(
                                io::ErrorKind::InvalidData,
                                "the client certificate has neither a common name nor a DNS name",
                            ),
                            "unnamed_certificate",
                        )),
                        named => {
                            let peer_identity = named.flatten();
                            if let (Some(device), Some(cert)) = (&peer_identity, certificate) {
                                certified
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .insert(device.clone(), cert.clone().into_owned());
                            }
                            Ok(Accepted {
                                peer_identity,
                                stream: Box::new(tls),
                            })
                        }
                    }
                }
                Err(e) => {
                    let reason = failure_reason(&e);
                    Err((e, reason))
                }
            };
            match result {
                Ok(accepted) => {
                    metrics.tls_handshake("ok");
                    Ok(accepted)
                }
                Err((e, reason)) => {
                    metrics.tls_handshake(reason);
                    if let Some(suppressed) = log.may_log() {
                        tracing::warn!(error = %e, reason, suppressed, "TLS handshake failed.");
                    }
                    Err(e)
                }
            }
        })
    }

    fn timed_out(&self) {
        self.metrics.tls_handshake("timeout");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reasons_come_from_the_rustls_error() {
        let wrap = |e: rustls::Error| io::Error::new(io::ErrorKind::InvalidData, e);
        assert_eq!(
            failure_reason(&wrap(rustls::Error::InvalidCertificate(
                CertificateError::Expired
            ))),
            "expired"
        );
        assert_eq!(
            failure_reason(&wrap(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer
            ))),
            "unknown_issuer"
        );
        assert_eq!(
            failure_reason(&wrap(rustls::Error::NoCertificatesPresented)),
            "no_certificate"
        );
        assert_eq!(
            failure_reason(&io::Error::from(io::ErrorKind::UnexpectedEof)),
            "closed"
        );
    }
}
