//! TLS for `wss://` and `https://` (rustls, ring provider): the certificate chain and private key
//! come from PEM files (`[tls] cert_file`, `key_file`). Every connection, LongPoll and the HTTP
//! API included, is then TLS; the handshake is bounded by `http_header_timeout_ms` like the
//! request head it precedes.

use std::sync::Arc;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use tokio_rustls::rustls;
pub use tokio_rustls::TlsAcceptor;

/// `[tls]`: serve TLS with this certificate chain and key (PEM).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: String,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: String,
}

/// Builds the acceptor; errors name the key and the file.
pub fn acceptor(c: &TlsConfig) -> Result<TlsAcceptor, String> {
    let certs = CertificateDer::pem_file_iter(&c.cert_file)
        .map_err(|e| format!("tls.cert_file {:?}: {e}", c.cert_file))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.cert_file {:?}: {e}", c.cert_file))?;
    if certs.is_empty() {
        return Err(format!("tls.cert_file {:?}: no certificate in it", c.cert_file));
    }
    let key = PrivateKeyDer::from_pem_file(&c.key_file).map_err(|e| format!("tls.key_file {:?}: {e}", c.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| format!("tls: the certificate and key do not fit: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
