//! The core's TLS settings from the build: the pinned site CA, the gateway's name and the
//! device's certificate and key (`FW_TLS_*`, checked by `build.rs` with the same code).

use crate::settings;
use sensor_node_core::tls::{CredentialError, DeviceCredentials, TlsSettings};

/// The TLS settings this image was built with.
pub fn tls_settings() -> Result<TlsSettings<'static>, CredentialError> {
    let device = match settings::TLS_DEVICE {
        Some((certificate, key)) => Some(DeviceCredentials::new(certificate, key)?),
        None => None,
    };
    TlsSettings::new(settings::TLS_CA, settings::TLS_SERVER_NAME, device)
}
