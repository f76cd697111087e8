//! `tls = { ... }` of a backend connection: off unless enabled; the
//! server's certificate is always verified against `ca_file` (required when
//! TLS is on: no implicit trust store); `cert_file` and `key_file` add a
//! client certificate. Each backend maps this onto its client library.

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

use super::BuildError;

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
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.enable && self.ca_file.is_none() {
            return Err(BuildError::missing(
                "tls.ca_file",
                "required when tls.enable = true (the CA that signed the server's certificate)",
            ));
        }
        match (&self.cert_file, &self.key_file) {
            (Some(_), None) => return Err(BuildError::missing("tls.key_file", "required with tls.cert_file")),
            (None, Some(_)) => return Err(BuildError::missing("tls.cert_file", "required with tls.key_file")),
            _ => {}
        }
        for (key, p) in [("ca_file", &self.ca_file), ("cert_file", &self.cert_file), ("key_file", &self.key_file)] {
            if let Some(p) = p {
                std::fs::metadata(p)
                    .map_err(|e| BuildError::file(format!("tls.{key}"), format!("cannot read {}: {e}", p.display())))?;
            }
        }
        Ok(())
    }

    /// A rustls client configuration (ring provider, TLS 1.2 and 1.3).
    pub fn rustls_client_config(&self) -> Result<rustls::ClientConfig, BuildError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        let p = self
            .ca_file
            .as_ref()
            .ok_or_else(|| BuildError::missing("tls.ca_file", "required when tls.enable = true"))?;
        for c in read_certs(p, "tls.ca_file")? {
            roots.add(c).map_err(|e| BuildError::file("tls.ca_file", format!("{}: {e}", p.display())))?;
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| BuildError::client("tls", e.to_string()))?
            .with_root_certificates(roots);
        match (&self.cert_file, &self.key_file) {
            (Some(c), Some(k)) => {
                let chain = read_certs(c, "tls.cert_file")?;
                let key = read_key(k, "tls.key_file")?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|e| BuildError::invalid("tls.key_file", e.to_string()))
            }
            _ => Ok(builder.with_no_client_auth()),
        }
    }
}

/// The PEM certificates in `path`; errors are [`BuildErrorKind::File`]
/// at `key`.
///
/// [`BuildErrorKind::File`]: super::BuildErrorKind::File
pub fn read_certs(
    path: &std::path::Path,
    key: &str,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, BuildError> {
    let data =
        std::fs::read(path).map_err(|e| BuildError::file(key, format!("cannot read {}: {e}", path.display())))?;
    let certs = rustls_pemfile::certs(&mut data.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BuildError::file(key, format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(BuildError::file(key, format!("{}: no PEM certificate found", path.display())));
    }
    Ok(certs)
}

/// The PEM private key in `path`; errors are file errors at `key`.
pub fn read_key(path: &std::path::Path, key: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>, BuildError> {
    let data =
        std::fs::read(path).map_err(|e| BuildError::file(key, format!("cannot read {}: {e}", path.display())))?;
    rustls_pemfile::private_key(&mut data.as_slice())
        .map_err(|e| BuildError::file(key, format!("{}: {e}", path.display())))?
        .ok_or_else(|| BuildError::file(key, format!("{}: no PEM private key found", path.display())))
}
