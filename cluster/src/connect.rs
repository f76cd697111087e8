//! The node's NATS connection, built from `[cluster]` in two steps (as the
//! backends do): [`ConnectPlan::new`] validates the table and resolves its
//! secrets (pure but for reading the named files), and
//! [`ConnectPlan::options`] turns the plan into async-nats
//! `ConnectOptions`; [`ConnectPlan::connect`] then connects.
//!
//! What the options say:
//!
//! - the connection is named after the node (`[node] name`), so NATS'
//!   monitoring (`/connz`) shows which broker is which;
//! - `no_echo`: a node never receives its own publishes back (local
//!   routing has delivered them already: issue 19's "no echo");
//! - TLS is always given a rustls configuration: with `tls.enable` the CA
//!   from `tls.ca_file` (and the client certificate), else an empty trust
//!   store, so a server that demands TLS is refused rather than trusted
//!   through the system's store (async-nats' own fallback);
//! - `tls.server_name` replaces the URL's host in certificate verification
//!   (the name is checked against the certificate; the SNI still carries
//!   the URL's host);
//! - the connect and request timeouts of the table.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_nats::{ConnectOptions, ServerAddr};
use portcullis_backends::common::tls::{read_certs, TlsConfig};
use portcullis_backends::common::BuildError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use crate::config::{AuthMethod, ClusterConfig};

/// How the node proves itself to NATS, secrets resolved. Never printed.
#[derive(Clone)]
enum Auth {
    None,
    UserPassword {
        user: String,
        password: String,
    },
    Token(String),
    NkeySeed(String),
    /// The contents of the `.creds` file.
    Credentials(String),
}

/// A validated `[cluster]` table with its secrets resolved: everything
/// needed to connect, nothing yet connected.
#[derive(Clone)]
pub struct ConnectPlan {
    servers: Vec<ServerAddr>,
    name: String,
    auth: Auth,
    tls: TlsConfig,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for ConnectPlan {
    /// Shows the method, never a secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectPlan")
            .field("servers", &self.servers.iter().map(|s| s.as_url_str().to_string()).collect::<Vec<_>>())
            .field("name", &self.name)
            .field("auth", &self.auth_method())
            .field("tls", &self.tls)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// Why the node could not connect to NATS.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The table is wrong or a file or secret cannot be read.
    #[error("cluster.{0}")]
    Config(#[from] BuildError),
    /// No NATS server could be reached or the handshake failed.
    #[error("cannot connect to NATS: {0}")]
    Nats(#[from] async_nats::ConnectError),
    /// The node list refused this node (a duplicate `[node] name`) or
    /// could not be read or written.
    #[error("joining the cluster: {0}")]
    Join(String),
}

impl ConnectPlan {
    /// Validates `config` and resolves its secrets; `node_name` names the
    /// connection.
    pub fn new(config: &ClusterConfig, node_name: &str) -> Result<ConnectPlan, BuildError> {
        config.validate()?;
        let servers = config
            .nats
            .iter()
            .map(|u| ServerAddr::from_str(u).map_err(|e| BuildError::invalid("nats", format!("{u:?}: {e}"))))
            .collect::<Result<Vec<_>, _>>()?;
        let auth = match config.auth_method()? {
            AuthMethod::None => Auth::None,
            AuthMethod::UserPassword => Auth::UserPassword {
                user: config.username.clone().unwrap_or_default(),
                password: resolve(config.password.as_ref(), "password")?,
            },
            AuthMethod::Token => Auth::Token(resolve(config.token.as_ref(), "token")?),
            AuthMethod::NkeySeed => {
                let seed = resolve(config.nkey_seed.as_ref(), "nkey_seed")?;
                check_user_seed(&seed)?;
                Auth::NkeySeed(seed)
            }
            AuthMethod::CredentialsFile => {
                let path = config.credentials_file.as_deref().unwrap_or(std::path::Path::new(""));
                let text = std::fs::read_to_string(path).map_err(|e| {
                    BuildError::file("credentials_file", format!("cannot read {}: {e}", path.display()))
                })?;
                // Parse now so a broken file is a config error, not a
                // connection failure later.
                ConnectOptions::new()
                    .credentials(&text)
                    .map_err(|e| BuildError::file("credentials_file", format!("{}: {e}", path.display())))?;
                Auth::Credentials(text)
            }
        };
        Ok(ConnectPlan {
            servers,
            name: node_name.to_string(),
            auth,
            tls: config.tls.clone(),
            connect_timeout: config.connect_timeout,
            request_timeout: config.request_timeout,
        })
    }

    pub fn servers(&self) -> &[ServerAddr] {
        &self.servers
    }
    pub fn name(&self) -> &str {
        &self.name
    }
    pub fn auth_method(&self) -> AuthMethod {
        match self.auth {
            Auth::None => AuthMethod::None,
            Auth::UserPassword { .. } => AuthMethod::UserPassword,
            Auth::Token(_) => AuthMethod::Token,
            Auth::NkeySeed(_) => AuthMethod::NkeySeed,
            Auth::Credentials(_) => AuthMethod::CredentialsFile,
        }
    }

    /// The rustls configuration every connection uses: the configured CA
    /// and client certificate, the expected server name; without
    /// `tls.enable`, a store that trusts nothing.
    pub fn tls_client_config(&self) -> Result<rustls::ClientConfig, BuildError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        if !self.tls.enable {
            return Ok(rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| BuildError::client("tls", e.to_string()))?
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth());
        }
        let mut config = self.tls.rustls_client_config()?;
        if let Some(name) = &self.tls.server_name {
            let name = ServerName::try_from(name.clone())
                .map_err(|_| BuildError::invalid("tls.server_name", format!("{name:?} is not a DNS name or IP")))?;
            let mut roots = rustls::RootCertStore::empty();
            let ca = self.tls.ca_file.as_deref().unwrap_or(std::path::Path::new(""));
            for c in read_certs(ca, "tls.ca_file")? {
                roots.add(c).map_err(|e| BuildError::file("tls.ca_file", format!("{}: {e}", ca.display())))?;
            }
            let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| BuildError::client("tls", e.to_string()))?;
            config.dangerous().set_certificate_verifier(Arc::new(ExpectedName { inner, name }));
        }
        Ok(config)
    }

    /// The async-nats options (no I/O but reading the TLS files), with
    /// `no_echo`: the connection that publishes this node's messages.
    pub fn options(&self) -> Result<ConnectOptions, BuildError> {
        self.options_echo(false)
    }

    /// As [`Self::options`]; `echo` keeps this node's own publishes coming
    /// back. The queue-group connection needs it: NATS leaves a no-echo
    /// connection out of a queue group's pick for its own messages, and a
    /// shared group's members here must be eligible for messages published
    /// here (see `crate::routing`).
    pub fn options_echo(&self, echo: bool) -> Result<ConnectOptions, BuildError> {
        let mut options = match &self.auth {
            Auth::None => ConnectOptions::new(),
            Auth::UserPassword { user, password } => {
                ConnectOptions::with_user_and_password(user.clone(), password.clone())
            }
            Auth::Token(t) => ConnectOptions::with_token(t.clone()),
            Auth::NkeySeed(seed) => ConnectOptions::with_nkey(seed.clone()),
            Auth::Credentials(text) => ConnectOptions::with_credentials(text)
                .map_err(|e| BuildError::file("credentials_file", e.to_string()))?,
        };
        options = options.name(&self.name);
        if !echo {
            options = options.no_echo();
        }
        options = options
            .connection_timeout(self.connect_timeout)
            .request_timeout(Some(self.request_timeout))
            .tls_client_config(self.tls_client_config()?);
        if self.tls.enable {
            options = options.require_tls(true);
        }
        Ok(options)
    }

    /// Connects to the first NATS server that answers (in order).
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        self.connect_echo(false).await
    }

    /// [`Self::connect`] with [`Self::options_echo`].
    pub async fn connect_echo(&self, echo: bool) -> Result<async_nats::Client, ConnectError> {
        let options = self.options_echo(echo)?;
        Ok(options.connect(self.servers.clone()).await?)
    }
}

fn resolve(secret: Option<&portcullis_backends::common::secret::Secret>, key: &str) -> Result<String, BuildError> {
    secret.ok_or_else(|| BuildError::missing(key, "required"))?.resolve(key)
}

/// An NKEY user seed: `SU` and 56 more base32 characters that decode. The
/// error never repeats the value.
fn check_user_seed(seed: &str) -> Result<(), BuildError> {
    let bad = || BuildError::invalid("nkey_seed", "not an NKEY user seed (58 characters starting with SU)");
    if !seed.starts_with("SU") {
        return Err(bad());
    }
    nkeys::KeyPair::from_seed(seed).map(|_| ()).map_err(|_| bad())
}

/// Verifies the server's certificate against a configured name instead of
/// the host connected to; everything else is webpki's verification.
#[derive(Debug)]
struct ExpectedName {
    inner: Arc<WebPkiServerVerifier>,
    name: ServerName<'static>,
}

impl ServerCertVerifier for ExpectedName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.inner.verify_server_cert(end_entity, intermediates, &self.name, ocsp_response, now)
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests;
