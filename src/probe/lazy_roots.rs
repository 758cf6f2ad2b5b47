//! TLS for the HTTP client with the system's root certificates read on the
//! first certificate to verify, not when the client is built.
//!
//! reqwest's default verifier (rustls-platform-verifier) reads and parses
//! every file of the system's certificate directories when the client is
//! built: 147 files and most of a short `check`'s run time, spent even when
//! the metrics URL is plain http and no webhook is https. This verifier is
//! the same platform verifier, built on the first `verify_server_cert`, so
//! an https peer is verified exactly as before and a plain-http run reads
//! no certificate at all.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// The platform verifier, made when the first server certificate arrives.
#[derive(Debug)]
pub struct LazyPlatformVerifier {
    provider: Arc<CryptoProvider>,
    /// The verifier, or why the system's roots could not be loaded (kept:
    /// the directories are not read again on every connection).
    inner: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl LazyPlatformVerifier {
    /// A verifier whose roots are not loaded yet.
    pub fn new(provider: Arc<CryptoProvider>) -> Self {
        LazyPlatformVerifier {
            provider,
            inner: OnceLock::new(),
        }
    }

    /// Whether the system's roots have been loaded (tests, benchmarks).
    pub fn loaded(&self) -> bool {
        self.inner.get().is_some()
    }

    fn verifier(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.inner
            .get_or_init(|| rustls_platform_verifier::Verifier::new(self.provider.clone()))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    // Signatures need no roots: checked with the provider's algorithms, as
    // the platform verifier does, so they never trigger the load.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client configuration for reqwest: the installed crypto provider
/// (ring, see [`crate::install_crypto_provider`]), its default protocol
/// versions, the lazy platform verifier, and ALPN for HTTP/2 and HTTP/1.1 as
/// reqwest sets it for its own configurations.
pub fn client_config() -> Result<(rustls::ClientConfig, Arc<LazyPlatformVerifier>), rustls::Error> {
    let provider = CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
    let verifier = Arc::new(LazyPlatformVerifier::new(provider.clone()));
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier.clone())
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((config, verifier))
}
