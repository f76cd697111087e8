//! An HTTP endpoint as a SCRAM credential source
//! (`[auth.scram.<name>.http]`), answering in EMQX's REST-based SCRAM
//! shape: `200` with JSON `{"stored_key": hex, "server_key": hex, "salt":
//! hex, "is_superuser": bool}` (and, our addition, an optional
//! `"iterations"`; else the table's `iteration_count`).
//!
//! Any other `4xx` is "no such user" (EMQX ignores the authenticator then;
//! here the exchange goes on with a decoy and is refused at the proof);
//! a `5xx`, a transport error, a timeout or an unreadable body is a
//! failure (CONNACK 0x88), never a wrong password.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use portcullis_auth::scram::{from_hex, Algorithm, CredentialSource, ScramCredential};
use portcullis_core::gate::GateFuture;
use portcullis_core::provider::{ErrorKind, ProviderError};
use portcullis_core::units;
use serde::Deserialize;

use super::client::HttpClient;
use super::config::{
    default_connect_timeout, default_max_concurrency, default_max_idle_connections, default_request_timeout,
    default_retries, default_retry_backoff, BodyFormat, ClientSettings, Method, RequestConfig,
};
use super::request::{RequestSpec, Unsendable};
use crate::common::template::{Values, Var};
use crate::common::tls::TlsConfig;
use crate::common::BuildError;

/// `{"username": "${username}"}`.
pub fn default_scram_body() -> BTreeMap<String, String> {
    BTreeMap::from([("username".to_string(), "${username}".to_string())])
}

/// `[auth.scram.<name>.http]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScramHttpConfig {
    /// `http://` or `https://` URL; placeholders only in the query string.
    pub url: String,
    /// `get` (fields in the query string) or `post`.
    #[serde(default)]
    pub method: Method,
    /// `json` or `form`, for POST.
    #[serde(default)]
    pub body_format: BodyFormat,
    /// Extra headers; values may hold `${username}`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Field name => template; only `${username}` (the SCRAM user).
    #[serde(default = "default_scram_body")]
    pub body: BTreeMap<String, String>,
    /// Whole-request timeout (connect, send, answer).
    #[serde(default = "default_request_timeout", deserialize_with = "units::duration")]
    pub request_timeout: Duration,
    /// HTTPS: the CA file that signed the endpoint's certificate and an
    /// optional client certificate.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// EMQX's answer.
#[derive(Deserialize)]
struct Answer {
    stored_key: String,
    server_key: String,
    salt: String,
    #[serde(default)]
    is_superuser: bool,
    #[serde(default)]
    iterations: Option<u32>,
}

/// SCRAM credentials from an HTTP endpoint.
#[derive(Debug)]
pub struct HttpScram {
    client: HttpClient,
    request: RequestSpec,
    default_iterations: u32,
}

impl HttpScram {
    pub fn new(cfg: &ScramHttpConfig, default_iterations: u32) -> Result<HttpScram, BuildError> {
        let settings = ClientSettings {
            connect_timeout: default_connect_timeout(),
            request_timeout: cfg.request_timeout,
            retries: default_retries(),
            retry_backoff: default_retry_backoff(),
            max_concurrency: default_max_concurrency(),
            max_idle_connections: default_max_idle_connections(),
            idle_timeout: Some(Duration::from_secs(60)),
            tls: cfg.tls.clone(),
        };
        let client = HttpClient::build(&settings)?;
        let request = RequestConfig {
            url: cfg.url.clone(),
            method: cfg.method,
            body_format: cfg.body_format,
            headers: cfg.headers.clone(),
            body: cfg.body.clone(),
        };
        let request = RequestSpec::parse(&request, &[Var::Username], cfg.tls.enable)?;
        Ok(HttpScram { client, request, default_iterations })
    }

    async fn find(&self, username: &str) -> Result<Option<ScramCredential>, ProviderError> {
        let _permit = self.client.permit()?;
        let values = Values { username: Some(username), ..Values::default() };
        let req = match self.request.build(self.client.reqwest(), &values) {
            Ok(r) => r,
            // A name that cannot be sent is nobody's.
            Err(Unsendable(_)) => return Ok(None),
        };
        let answer = self.client.send(req).await?;
        match answer.status {
            200 => {}
            400..=499 => return Ok(None),
            s => return Err(ProviderError::new(ErrorKind::BadResponse, format!("status {s}"))),
        }
        let a: Answer = serde_json::from_slice(&answer.body)
            .map_err(|e| ProviderError::new(ErrorKind::BadResponse, format!("SCRAM answer: {e}")))?;
        let hex = |name: &str, v: &str| {
            from_hex(v).ok_or_else(|| ProviderError::new(ErrorKind::BadResponse, format!("{name} is not hex")))
        };
        Ok(Some(ScramCredential {
            salt: hex("salt", &a.salt)?,
            iterations: a.iterations.unwrap_or(self.default_iterations),
            stored_key: hex("stored_key", &a.stored_key)?,
            server_key: hex("server_key", &a.server_key)?,
            superuser: a.is_superuser,
            inline_acl: None,
        }))
    }
}

impl CredentialSource for HttpScram {
    fn lookup<'a>(
        &'a self,
        username: &'a str,
        _alg: Algorithm,
    ) -> GateFuture<'a, Result<Option<ScramCredential>, ProviderError>> {
        Box::pin(self.find(username))
    }
}

/// Builds an HTTP credential source.
pub fn scram_source(cfg: &ScramHttpConfig, default_iterations: u32) -> Result<Arc<dyn CredentialSource>, BuildError> {
    Ok(Arc::new(HttpScram::new(cfg, default_iterations)?))
}
