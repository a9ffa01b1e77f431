//! TLS 1.3 to the gateway for boards and devsim alike (feature `tls`): embedded-tls, no
//! allocation, TLS_AES_128_GCM_SHA256 with secp256r1 and ECDSA P-256 certificates.
//!
//! ```text
//!   MQTT session (minimq) ──► TlsStream (embedded-tls) ──► RecordPipe ──► transport (TCP)
//!                                  │ PinnedCaVerifier: the site CA signed the gateway's
//!                                  │ certificate, for the name the device dials, serverAuth
//!                                  └ DeviceCredentials: certificate + key, if the gateway asks
//! ```
//!
//! The device trusts exactly one site CA (pinned, from its settings) and, with credentials,
//! proves its identity with a certificate whose CN is its device ID. External PSKs are not
//! offered: the gateway's TLS (rustls) does not accept them.

mod connector;
pub(crate) mod pinned_ca;
pub(crate) mod record_pipe;
pub mod x509;

pub use connector::{
    DeviceCredentials, TLS_WRITE_RECORD, TlsConnectError, TlsConnector, TlsMemory, TlsSettings,
    TlsStream,
};
/// What the connector needs of a random source (rand_core 0.6 `RngCore + CryptoRng`).
pub use embedded_tls::CryptoRngCore;
pub use pinned_ca::{CaKey, CredentialError, PinnedCaVerifier};
pub use record_pipe::RecordPipe;
pub use x509::ServerName;
