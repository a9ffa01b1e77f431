//! The device's check of the gateway: its certificate must be signed by the site CA the
//! device was built with (pinned: no system roots, no chain building), name the gateway as the
//! device addresses it, allow server use, and its key must sign the handshake.
//!
//! Not checked, because a device has no trustworthy clock when it first connects: the
//! certificate's validity dates. Revoking a gateway certificate therefore means a new site CA
//! on the devices (see firmware/README.md).

use super::x509::{Certificate, ServerName};
use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme,
    TlsError, TlsVerifier,
};
use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use sha2::Digest as _;

/// The site CA's public key (P-256), taken from its certificate.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CaKey(VerifyingKey);

impl core::fmt::Debug for CaKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("CaKey(P-256)")
    }
}

/// Why a CA certificate or a device key cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CredentialError {
    /// The CA certificate is not DER X.509 with a P-256 key.
    CaCertificate,
    /// The CA certificate's self-signature does not verify.
    CaSignature,
    /// The device key is not a 32-byte P-256 private scalar.
    DeviceKey,
    /// The device certificate is not DER X.509 with a P-256 key, or not for that key.
    DeviceCertificate,
    /// The server name is empty.
    ServerName,
}

impl CaKey {
    /// The key of a site CA certificate (DER), which must be self-signed with ECDSA P-256.
    pub fn from_certificate(der: &[u8]) -> Result<Self, CredentialError> {
        let cert = Certificate::parse(der).ok_or(CredentialError::CaCertificate)?;
        let key = cert
            .p256_key
            .and_then(|k| VerifyingKey::from_sec1_bytes(k).ok())
            .ok_or(CredentialError::CaCertificate)?;
        let ca = Self(key);
        if ca.signed(&cert) {
            Ok(ca)
        } else {
            Err(CredentialError::CaSignature)
        }
    }

    /// Whether this key signed `cert`.
    fn signed(&self, cert: &Certificate<'_>) -> bool {
        cert.ecdsa_sha256_signature
            .and_then(|der| Signature::from_der(der).ok())
            .is_some_and(|sig| self.0.verify(cert.signed, &sig).is_ok())
    }
}

/// Checks the gateway's certificate and its CertificateVerify (TLS 1.3, ECDSA P-256 SHA-256).
#[derive(Debug)]
pub struct PinnedCaVerifier<'a> {
    ca: CaKey,
    name: ServerName<'a>,
    /// The accepted leaf's key and the transcript up to its Certificate message, kept for
    /// the CertificateVerify that follows.
    pending: Option<(VerifyingKey, sha2::Sha256)>,
}

impl<'a> PinnedCaVerifier<'a> {
    /// A verifier for a gateway addressed as `name`.
    pub fn new(ca: CaKey, name: ServerName<'a>) -> Self {
        Self {
            ca,
            name,
            pending: None,
        }
    }

    /// The gateway's key if `der` is a certificate the site CA issued to it.
    fn accept(&self, der: &[u8]) -> Option<VerifyingKey> {
        let cert = Certificate::parse(der)?;
        if !self.ca.signed(&cert) || !cert.allows_server_auth() || !cert.names(&self.name) {
            return None;
        }
        VerifyingKey::from_sec1_bytes(cert.p256_key?).ok()
    }
}

impl TlsVerifier<Aes128GcmSha256> for PinnedCaVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The expected name is fixed at construction (it may be an IP, which is not sent as SNI).
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &sha2::Sha256,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        let Some(CertificateEntryRef::X509(leaf)) = cert.entries.first() else {
            return Err(TlsError::InvalidCertificate);
        };
        let key = self.accept(leaf).ok_or(TlsError::InvalidCertificate)?;
        self.pending = Some((key, transcript.clone()));
        Ok(())
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        let (key, transcript) = self.pending.take().ok_or(TlsError::InvalidCertificate)?;
        if verify.signature_scheme != SignatureScheme::EcdsaSecp256r1Sha256 {
            return Err(TlsError::InvalidSignatureScheme);
        }
        // RFC 8446 4.4.3: 64 spaces, the context string, a zero byte, the transcript hash.
        const CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";
        let mut message = [0x20u8; 64 + CONTEXT.len() + 32];
        message[64..64 + CONTEXT.len()].copy_from_slice(CONTEXT);
        message[64 + CONTEXT.len()..].copy_from_slice(&transcript.finalize());
        let signature =
            Signature::from_der(verify.signature).map_err(|_| TlsError::InvalidSignature)?;
        key.verify(&message, &signature)
            .map_err(|_| TlsError::InvalidSignature)
    }
}

#[cfg(any(test, feature = "target-tests"))]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;
    use crate::tls::DeviceCredentials;

    const CA: &[u8] = include_bytes!("fixtures/ca.der");
    const GATEWAY: &[u8] = include_bytes!("fixtures/gateway.der");
    const DEVICE: &[u8] = include_bytes!("fixtures/sensor-1.der");
    const DEVICE_KEY: &[u8] = include_bytes!("fixtures/sensor-1.key");
    const OTHER_CA: &[u8] = include_bytes!("fixtures/other-ca.der");
    const OTHER_GATEWAY: &[u8] = include_bytes!("fixtures/other-gateway.der");

    fn verifier(name: &str) -> PinnedCaVerifier<'_> {
        let ca = CaKey::from_certificate(CA).expect("the site CA");
        PinnedCaVerifier::new(ca, ServerName::parse(name).unwrap())
    }

    #[cfg_attr(test, test)]
    pub(crate) fn the_sites_gateway_is_accepted_by_its_dns_name_and_its_ip() {
        assert!(verifier("gw.site.test").accept(GATEWAY).is_some());
        assert!(verifier("GW.Site.Test").accept(GATEWAY).is_some());
        assert!(verifier("10.0.2.2").accept(GATEWAY).is_some());
    }

    #[cfg_attr(test, test)]
    pub(crate) fn another_name_another_site_or_a_device_certificate_is_refused() {
        assert!(verifier("other.site.test").accept(GATEWAY).is_none());
        assert!(verifier("10.0.2.3").accept(GATEWAY).is_none());
        assert!(verifier("gw.site.tes").accept(GATEWAY).is_none());
        // Same names, signed by another site's CA.
        assert!(verifier("gw.site.test").accept(OTHER_GATEWAY).is_none());
        // A device certificate from the right CA cannot pose as the gateway, even for its
        // own CN: it has no names and is for clientAuth only.
        assert!(verifier("sensor-1").accept(DEVICE).is_none());
        let device = Certificate::parse(DEVICE).unwrap();
        assert!(!device.allows_server_auth());
        assert!(Certificate::parse(GATEWAY).unwrap().allows_server_auth());
        // A flipped bit anywhere in the signed part breaks the CA's signature.
        let mut forged = [0u8; GATEWAY.len()];
        forged.copy_from_slice(GATEWAY);
        forged[GATEWAY.len() / 2] ^= 0x01;
        assert!(verifier("gw.site.test").accept(&forged).is_none());
    }

    #[cfg_attr(test, test)]
    pub(crate) fn only_a_self_signed_p256_ca_can_be_pinned() {
        assert!(CaKey::from_certificate(OTHER_CA).is_ok());
        assert_ne!(
            CaKey::from_certificate(OTHER_CA),
            CaKey::from_certificate(CA)
        );
        assert_eq!(
            CaKey::from_certificate(GATEWAY),
            Err(CredentialError::CaSignature)
        );
        assert_eq!(
            CaKey::from_certificate(&CA[..100]),
            Err(CredentialError::CaCertificate)
        );
    }

    #[cfg_attr(test, test)]
    pub(crate) fn device_credentials_must_match_their_certificate() {
        assert!(DeviceCredentials::new(DEVICE, DEVICE_KEY).is_ok());
        let mut other_key = [0u8; 32];
        other_key.copy_from_slice(DEVICE_KEY);
        other_key[31] ^= 1;
        assert_eq!(
            DeviceCredentials::new(DEVICE, &other_key).err(),
            Some(CredentialError::DeviceCertificate)
        );
        assert_eq!(
            DeviceCredentials::new(DEVICE, &DEVICE_KEY[..31]).err(),
            Some(CredentialError::DeviceKey)
        );
        assert_eq!(
            DeviceCredentials::new(GATEWAY, DEVICE_KEY).err(),
            Some(CredentialError::DeviceCertificate)
        );
    }
}
