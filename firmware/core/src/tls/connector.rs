//! [`TlsConnector`]: TLS 1.3 (embedded-tls, no allocation) over any [`Connector`].

use super::pinned_ca::{CaKey, CredentialError, PinnedCaVerifier};
use super::record_pipe::RecordPipe;
use super::x509::{Certificate, ServerName};
use crate::mqtt::Connector;
use embedded_tls::{
    Aes128GcmSha256, CryptoProvider, CryptoRngCore, SignatureScheme, TlsConfig, TlsConnection,
    TlsContext, TlsError, TlsVerifier,
};
use p256::ecdsa::{DerSignature, SigningKey};
use telemetry_wire::limits::TLS_MAX_RECORD;

/// Plaintext bytes one outgoing record carries, plus its 22 bytes of framing. It must hold
/// the client hello and the device's certificate message (a P-256 certificate of ~500 bytes).
pub const TLS_WRITE_RECORD: usize = 1024;

/// The connection's memory, ~7 KiB; static RAM on a board. Reused by every connection.
#[derive(Debug)]
pub struct TlsMemory {
    /// embedded-tls decrypts one incoming record body here.
    read: [u8; TLS_MAX_RECORD],
    /// embedded-tls builds and encrypts one outgoing record here.
    write: [u8; TLS_WRITE_RECORD],
    /// Incoming bytes until a whole record is here (see [`RecordPipe`]).
    pipe_rx: [u8; TLS_MAX_RECORD],
    /// Outgoing records not yet on the transport: room for two.
    pipe_tx: [u8; 2 * TLS_WRITE_RECORD],
}

impl TlsMemory {
    /// Zeroed buffers (a `const fn`, for a `static`).
    pub const fn new() -> Self {
        Self {
            read: [0; TLS_MAX_RECORD],
            write: [0; TLS_WRITE_RECORD],
            pipe_rx: [0; TLS_MAX_RECORD],
            pipe_tx: [0; 2 * TLS_WRITE_RECORD],
        }
    }
}

impl Default for TlsMemory {
    fn default() -> Self {
        Self::new()
    }
}

/// A device certificate (DER) and its P-256 private key, for gateways that ask for one.
#[derive(Clone)]
pub struct DeviceCredentials<'a> {
    certificate: &'a [u8],
    key: SigningKey,
}

impl core::fmt::Debug for DeviceCredentials<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DeviceCredentials")
            .field("certificate_bytes", &self.certificate.len())
            .finish_non_exhaustive()
    }
}

impl<'a> DeviceCredentials<'a> {
    /// `certificate` in DER; `private_key` the 32-byte P-256 scalar. The certificate must be
    /// for that key, so a mismatch fails here and not in every handshake.
    pub fn new(certificate: &'a [u8], private_key: &[u8]) -> Result<Self, CredentialError> {
        let key: &[u8; 32] = private_key
            .try_into()
            .map_err(|_| CredentialError::DeviceKey)?;
        let key = SigningKey::from_bytes(key.into()).map_err(|_| CredentialError::DeviceKey)?;
        let public = key.verifying_key().to_encoded_point(false);
        let matches = Certificate::parse(certificate)
            .and_then(|c| c.p256_key)
            .is_some_and(|k| k == public.as_bytes());
        if !matches {
            return Err(CredentialError::DeviceCertificate);
        }
        Ok(Self { certificate, key })
    }
}

/// What a device needs to reach the gateway over TLS.
#[derive(Debug, Clone)]
pub struct TlsSettings<'a> {
    /// The site CA that signed the gateway's certificate.
    pub ca: CaKey,
    /// The gateway's name as in its certificate (DNS name, or the IPv4 address it is reached at).
    pub server_name: ServerName<'a>,
    /// A device certificate, if the gateway asks for one (else the device logs in with its
    /// MQTT password over the encrypted link).
    pub device: Option<DeviceCredentials<'a>>,
}

impl<'a> TlsSettings<'a> {
    /// Settings from the CA certificate (DER), the gateway's name and optional device
    /// credentials; every part is checked.
    pub fn new(
        ca_certificate: &[u8],
        server_name: &'a str,
        device: Option<DeviceCredentials<'a>>,
    ) -> Result<Self, CredentialError> {
        Ok(Self {
            ca: CaKey::from_certificate(ca_certificate)?,
            server_name: ServerName::parse(server_name).ok_or(CredentialError::ServerName)?,
            device,
        })
    }
}

/// Why a TLS connection could not be opened.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TlsConnectError<E> {
    /// The transport below failed (TCP connect).
    Transport(E),
    /// The handshake failed: the gateway's certificate was refused
    /// (`InvalidCertificate`, `InvalidSignature`), the gateway refused the device's (an alert),
    /// or the link broke.
    Handshake(TlsError),
}

/// The stream the MQTT session runs over: TLS over the cancel-safe [`RecordPipe`].
pub type TlsStream<'a, T> = TlsConnection<'a, RecordPipe<'a, T>, Aes128GcmSha256>;

/// Opens `inner`'s transport and runs a TLS 1.3 handshake over it
/// (TLS_AES_128_GCM_SHA256, secp256r1, ECDSA P-256 certificates; the gateway must keep its
/// records within `TLS_MAX_FRAGMENT`, which it does).
pub struct TlsConnector<'m, K, R> {
    inner: K,
    settings: TlsSettings<'m>,
    memory: &'m mut TlsMemory,
    rng: R,
}

impl<K: core::fmt::Debug, R> core::fmt::Debug for TlsConnector<'_, K, R> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("inner", &self.inner)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl<'m, K: Connector, R: CryptoRngCore> TlsConnector<'m, K, R> {
    /// TLS over `inner`, with `rng` (a hardware RNG on a board) for the key exchange.
    pub fn new(inner: K, settings: TlsSettings<'m>, memory: &'m mut TlsMemory, rng: R) -> Self {
        Self {
            inner,
            settings,
            memory,
            rng,
        }
    }

    /// The transport connector below.
    pub fn inner(&self) -> &K {
        &self.inner
    }
}

impl<K: Connector, R: CryptoRngCore> Connector for TlsConnector<'_, K, R> {
    type Io<'a>
        = TlsStream<'a, K::Io<'a>>
    where
        Self: 'a;
    type Error = TlsConnectError<K::Error>;

    async fn connect(&mut self) -> Result<Self::Io<'_>, Self::Error> {
        let io = self
            .inner
            .connect()
            .await
            .map_err(TlsConnectError::Transport)?;
        let memory = &mut *self.memory;
        let pipe = RecordPipe::new(io, &mut memory.pipe_rx, &mut memory.pipe_tx);
        let mut tls = TlsConnection::new(pipe, &mut memory.read, &mut memory.write);
        let config = match self.settings.server_name {
            ServerName::Dns(name) => TlsConfig::new().with_server_name(name),
            ServerName::Ipv4(_) => TlsConfig::new(), // IP addresses are not sent as SNI
        };
        let provider = Provider {
            rng: &mut self.rng,
            verifier: PinnedCaVerifier::new(self.settings.ca, self.settings.server_name),
            device: self.settings.device.as_ref(),
        };
        tls.open(TlsContext::new(&config, provider))
            .await
            .map_err(TlsConnectError::Handshake)?;
        Ok(tls)
    }
}

/// embedded-tls's view of the device: randomness, the gateway check, the device's key.
struct Provider<'p, R> {
    rng: &'p mut R,
    verifier: PinnedCaVerifier<'p>,
    device: Option<&'p DeviceCredentials<'p>>,
}

impl<R: CryptoRngCore> CryptoProvider for Provider<'_, R> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = DerSignature;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(&mut self.verifier)
    }

    fn signer(
        &mut self,
    ) -> Result<(impl signature::SignerMut<DerSignature>, SignatureScheme), TlsError> {
        let device = self.device.ok_or(TlsError::InvalidPrivateKey)?;
        Ok((device.key.clone(), SignatureScheme::EcdsaSecp256r1Sha256))
    }

    fn client_cert(&mut self) -> Option<embedded_tls::Certificate<impl AsRef<[u8]>>> {
        self.device
            .map(|d| embedded_tls::Certificate::X509(d.certificate))
    }
}
