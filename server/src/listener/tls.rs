//! A TLS listener's rustls configuration: the certificate chain and key it
//! presents, the CA bundle client certificates are verified against, TLS
//! 1.2/1.3 and ALPN, and its reload.
//!
//! The configuration is one `Arc<ServerConfig>` behind a lock, cloned for
//! each new connection. A reload builds a new one from the files and swaps
//! it in: connections already established keep the session they have, new
//! ones get the new certificates. A reload that fails (a half-written file,
//! a key that does not match) keeps the previous configuration and logs why.
//! Reloads happen on SIGHUP and when [`TlsState::changed`] sees a file's
//! modification time or size change (polled every `tls.reload_poll`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use portcullis_backends::common::tls::{read_certs, read_key};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;

use crate::config::listener::{ClientCertMode, ListenerTlsConfig, TlsVersionName};

/// One TLS listener's current configuration and what it was built from.
#[derive(Debug)]
pub struct TlsState {
    cfg: ListenerTlsConfig,
    alpn: Vec<Vec<u8>>,
    current: RwLock<Arc<ServerConfig>>,
    /// Modification time and size of each file at the last (re)load.
    stamps: Mutex<Vec<Option<(SystemTime, u64)>>>,
}

impl TlsState {
    /// Builds the first configuration. Errors name the key
    /// (`tls.cert_file: cannot read …`).
    pub fn load(cfg: &ListenerTlsConfig, alpn: &[&str]) -> Result<TlsState, String> {
        let alpn: Vec<Vec<u8>> = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let stamps = stamps(cfg);
        let config = build(cfg, &alpn)?;
        Ok(TlsState { cfg: cfg.clone(), alpn, current: RwLock::new(Arc::new(config)), stamps: Mutex::new(stamps) })
    }

    /// An acceptor for one new connection, with the current certificates.
    pub fn acceptor(&self) -> TlsAcceptor {
        let config = match self.current.read() {
            Ok(c) => Arc::clone(&c),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        };
        TlsAcceptor::from(config)
    }

    /// Rebuilds from the files and swaps the result in; on error the
    /// previous configuration stays.
    pub fn reload(&self) -> Result<(), String> {
        let stamps = stamps(&self.cfg);
        if let Ok(mut s) = self.stamps.lock() {
            *s = stamps;
        }
        let config = Arc::new(build(&self.cfg, &self.alpn)?);
        match self.current.write() {
            Ok(mut c) => *c = config,
            Err(poisoned) => *poisoned.into_inner() = config,
        }
        Ok(())
    }

    /// True if a file changed since the last (re)load.
    pub fn changed(&self) -> bool {
        let now = stamps(&self.cfg);
        self.stamps.lock().is_ok_and(|s| *s != now)
    }

    /// The files, for log lines.
    pub fn files(&self) -> String {
        let mut files = vec![self.cfg.cert_file.display().to_string(), self.cfg.key_file.display().to_string()];
        if let Some(ca) = &self.cfg.ca_file {
            files.push(ca.display().to_string());
        }
        files.join(", ")
    }
}

fn files(cfg: &ListenerTlsConfig) -> Vec<&PathBuf> {
    let mut v = vec![&cfg.cert_file, &cfg.key_file];
    v.extend(cfg.ca_file.as_ref());
    v
}

fn stamps(cfg: &ListenerTlsConfig) -> Vec<Option<(SystemTime, u64)>> {
    files(cfg)
        .into_iter()
        .map(|p| std::fs::metadata(p).ok().and_then(|m| Some((m.modified().ok()?, m.len()))))
        .collect()
}

/// The rustls configuration from the files (ring provider).
fn build(cfg: &ListenerTlsConfig, alpn: &[Vec<u8>]) -> Result<ServerConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = match cfg.min_version {
        TlsVersionName::V1_2 => &[&rustls::version::TLS13, &rustls::version::TLS12],
        TlsVersionName::V1_3 => &[&rustls::version::TLS13],
    };
    let chain = read_certs(&cfg.cert_file, "tls.cert_file").map_err(|e| e.to_string())?;
    let key = read_key(&cfg.key_file, "tls.key_file").map_err(|e| e.to_string())?;
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(versions)
        .map_err(|e| format!("tls.min_version: {e}"))?;
    let builder = match (cfg.client_cert, &cfg.ca_file) {
        (ClientCertMode::None, _) => builder.with_no_client_auth(),
        (mode, ca_file) => {
            let ca_file = ca_file.as_ref().ok_or("tls.ca_file: required to verify client certificates")?;
            let mut roots = RootCertStore::empty();
            for cert in read_certs(ca_file, "tls.ca_file").map_err(|e| e.to_string())? {
                roots.add(cert).map_err(|e| format!("tls.ca_file: {}: {e}", ca_file.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = match mode {
                ClientCertMode::Optional => verifier.allow_unauthenticated(),
                _ => verifier,
            };
            builder.with_client_cert_verifier(verifier.build().map_err(|e| format!("tls.ca_file: {e}"))?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).map_err(|e| format!("tls.cert_file / tls.key_file: {e}"))?;
    config.alpn_protocols = alpn.to_vec();
    Ok(config)
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    fn write_pair(dir: &std::path::Path, cn: &str) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        let (c, k) = (dir.join(format!("{cn}.pem")), dir.join(format!("{cn}.key")));
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    fn cfg(cert_file: PathBuf, key_file: PathBuf) -> ListenerTlsConfig {
        ListenerTlsConfig {
            cert_file,
            key_file,
            ca_file: None,
            client_cert: ClientCertMode::None,
            min_version: TlsVersionName::V1_2,
            reload_poll: None,
        }
    }

    #[test]
    fn errors_name_the_key_and_a_failed_reload_keeps_the_old_config() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let e = TlsState::load(&cfg(dir.path().join("missing.pem"), k.clone()), &["mqtt"]).unwrap_err();
        assert!(e.starts_with("tls.cert_file: cannot read"), "{e}");
        let (_, other_key) = write_pair(dir.path(), "b");
        let e = TlsState::load(&cfg(c.clone(), other_key), &["mqtt"]).unwrap_err();
        assert!(e.contains("tls.cert_file / tls.key_file"), "{e}");

        let state = TlsState::load(&cfg(c.clone(), k.clone()), &["mqtt"]).unwrap();
        assert!(!state.changed());
        std::fs::write(&k, "not a key").unwrap();
        assert!(state.changed());
        let before = state.acceptor().config().clone();
        let e = state.reload().unwrap_err();
        assert!(e.starts_with("tls.key_file"), "{e}");
        assert!(!state.changed(), "the change was seen");
        assert!(Arc::ptr_eq(&before, state.acceptor().config()), "previous config kept");
        assert_eq!(state.acceptor().config().alpn_protocols, vec![b"mqtt".to_vec()]);
    }

    #[test]
    fn client_certificates_need_a_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (c, k) = write_pair(dir.path(), "a");
        let mut config = cfg(c.clone(), k);
        config.client_cert = ClientCertMode::Required;
        assert!(TlsState::load(&config, &[]).unwrap_err().starts_with("tls.ca_file"));
        config.ca_file = Some(c);
        TlsState::load(&config, &[]).unwrap();
    }
}
