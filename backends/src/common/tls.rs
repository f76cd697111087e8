//! `tls = { ... }` of a backend connection: off unless enabled; the
//! server's certificate is always verified against `ca_file` (required when
//! TLS is on: no implicit trust store); `cert_file` and `key_file` add a
//! client certificate. Each backend maps this onto its client library.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    #[serde(default)]
    pub enable: bool,
    /// PEM bundle of the CAs that may sign the server's certificate.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (with `key_file`).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Name expected in the server's certificate; default: the host
    /// connected to.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl TlsConfig {
    /// Checks that the files exist and pair up; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.enable && self.ca_file.is_none() {
            return Err(
                "tls.ca_file: required when tls.enable = true (the CA that signed the server's certificate)".into()
            );
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("tls.cert_file and tls.key_file go together".into());
        }
        for (key, p) in [("ca_file", &self.ca_file), ("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if let Some(p) = p {
                std::fs::metadata(p).map_err(|e| format!("tls.{key}: cannot read {}: {e}", p.display()))?;
            }
        }
        Ok(())
    }

    /// A rustls client configuration (ring provider, TLS 1.2 and 1.3).
    pub fn rustls_client_config(&self) -> Result<rustls::ClientConfig, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let p = self.ca_file.as_ref().ok_or("tls.ca_file: required when tls.enable = true")?;
        for c in read_certs(p, "tls.ca_file")? {
            roots.add(c).map_err(|e| format!("tls.ca_file: {}: {e}", p.display()))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("tls: {e}"))?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let chain = read_certs(c, "tls.cert_file")?;
                let key = read_key(k)?;
                builder.with_client_auth_cert(chain, key).map_err(|e| format!("tls.key_file: {e}"))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

pub fn read_certs(
    path: &std::path::Path,
    key: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{key}: cannot read {}: {e}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{key}: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{key}: {}: no PEM certificate found", path.display()));
    }
    Ok(certs)
}

pub fn read_key(path: &std::path::Path) -> Result<rustls::pki_types::PrivateKeyDer<'static>, String> {
    let data = std::fs::read(path).map_err(|e| format!("tls.key_file: cannot read {}: {e}", path.display()))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| format!("tls.key_file: {}: {e}", path.display()))?
        .ok_or_else(|| format!("tls.key_file: {}: no PEM private key found", path.display()))
}
