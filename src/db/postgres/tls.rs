//! Connection strings as Neon and libpq write them, turned into a `tokio-postgres` config with
//! rustls: `sslmode` (disable, prefer, require, verify-ca, verify-full), `sslrootcert`, and
//! `channel_binding` (enforced by tokio-postgres: SCRAM-SHA-256-PLUS or no connection).
//!
//! Certificate checks follow libpq: `require` and `prefer` encrypt without verifying the server
//! (unless `sslrootcert` is given, which makes them `verify-ca`); `verify-ca` checks the chain;
//! `verify-full` checks the chain and the host name. Channel binding protects the password
//! exchange against a man in the middle even where the certificate is not verified.

use std::str::FromStr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    None,
    Chain,
    Full,
}

/// A parsed connection string: the driver's config and how to check the server.
pub struct Target {
    pub config: tokio_postgres::Config,
    pub verify: Verify,
    pub root_cert: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("DATABASE_URL is not a valid URL")]
    NotAUrl,
    #[error("DATABASE_URL has an invalid {0}")]
    Invalid(&'static str),
    #[error("cannot read sslrootcert {path}: {reason}")]
    RootCert { path: String, reason: String },
}

/// Parses a `postgres://` / `postgresql://` URL.
pub fn parse(url: &str) -> Result<Target, UrlError> {
    let mut parsed = url::Url::parse(url).map_err(|_| UrlError::NotAUrl)?;
    let mut sslmode = "prefer".to_owned();
    let mut root_cert = None;
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in parsed.query_pairs() {
        match k.as_ref() {
            "sslmode" => sslmode = v.into_owned(),
            "sslrootcert" => root_cert = Some(v.into_owned()),
            // libpq client-side settings tokio-postgres has no use for (SNI is always sent).
            "sslsni" | "sslcompression" | "gssencmode" => {}
            "sslcert" | "sslkey" | "sslcrl" => {
                return Err(UrlError::Invalid("client certificate setting (not supported)"));
            }
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    let (mode, verify) = match sslmode.as_str() {
        "disable" => (SslMode::Disable, Verify::None),
        "allow" | "prefer" => (SslMode::Prefer, if root_cert.is_some() { Verify::Chain } else { Verify::None }),
        "require" => (SslMode::Require, if root_cert.is_some() { Verify::Chain } else { Verify::None }),
        "verify-ca" => (SslMode::Require, Verify::Chain),
        "verify-full" => (SslMode::Require, Verify::Full),
        _ => return Err(UrlError::Invalid("sslmode (use disable, prefer, require, verify-ca or verify-full)")),
    };
    parsed.set_query(None);
    if !kept.is_empty() {
        parsed.query_pairs_mut().extend_pairs(kept.iter());
    }
    let mut config = tokio_postgres::Config::from_str(parsed.as_str()).map_err(|e| {
        let text = e.to_string();
        if text.contains("channel_binding") {
            UrlError::Invalid("channel_binding")
        } else {
            UrlError::Invalid("parameter")
        }
    })?;
    config.ssl_mode(mode);
    Ok(Target { config, verify, root_cert })
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The rustls client configuration for a target.
pub fn client_config(target: &Target) -> Result<ClientConfig, UrlError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    match &target.root_cert {
        Some(path) => {
            let err = |reason: String| UrlError::RootCert { path: path.clone(), reason };
            for cert in CertificateDer::pem_file_iter(path).map_err(|e| err(e.to_string()))? {
                roots.add(cert.map_err(|e| err(e.to_string()))?).map_err(|e| err(e.to_string()))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions");
    let config = match target.verify {
        Verify::Full => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::Chain | Verify::None => {
            let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| UrlError::RootCert { path: "(roots)".into(), reason: e.to_string() })?;
            let verifier = Arc::new(LibpqVerifier { webpki, provider, check_chain: target.verify == Verify::Chain });
            builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth()
        }
    };
    Ok(config)
}

/// `verify-ca` (chain, any name) or libpq's `require` (no certificate check): the handshake's
/// signatures are always checked, so channel binding still pins the real server's certificate.
#[derive(Debug)]
struct LibpqVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    provider: Arc<CryptoProvider>,
    check_chain: bool,
}

impl ServerCertVerifier for LibpqVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if !self.check_chain {
            return Ok(ServerCertVerified::assertion());
        }
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Ok(ok) => Ok(ok),
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neons_connection_string_parses_with_channel_binding_required() {
        let target = parse(
            "postgresql://alex:pw@ep-cool-1234-pooler.us-east-2.aws.neon.tech/neondb?sslmode=require&channel_binding=require",
        )
        .unwrap();
        assert_eq!(target.config.get_ssl_mode(), SslMode::Require);
        assert_eq!(target.config.get_channel_binding(), tokio_postgres::config::ChannelBinding::Require);
        assert_eq!(target.verify, Verify::None);
    }

    #[test]
    fn verify_full_and_root_certs_are_understood() {
        let target = parse("postgres://u@db.example/x?sslmode=verify-full&sslrootcert=/tmp/ca.pem").unwrap();
        assert_eq!(target.verify, Verify::Full);
        assert_eq!(target.root_cert.as_deref(), Some("/tmp/ca.pem"));
        let target = parse("postgres://u@db.example/x?sslmode=require&sslrootcert=/tmp/ca.pem").unwrap();
        assert_eq!(target.verify, Verify::Chain);
    }

    #[test]
    fn unknown_ssl_modes_are_refused() {
        assert!(parse("postgres://u@h/x?sslmode=sometimes").is_err());
        assert!(parse("postgres://u@h/x?channel_binding=always").is_err());
    }
}
