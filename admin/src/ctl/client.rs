//! How `ctl` reaches the admin API: the Unix socket named by
//! `[admin] socket` (no key: its mode makes the caller the broker's user or
//! root), else HTTP on `--url` or `[admin] bind` with an API key. One
//! HTTP/1.1 request per connection, under a timeout.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};

/// Where requests go.
#[derive(Debug, Clone)]
pub enum Target {
    /// The admin API's Unix socket.
    Socket(PathBuf),
    /// HTTP on this address, with `key:secret` (none: only the public
    /// status answers).
    Http { addr: SocketAddr, key: Option<String> },
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Socket(p) => write!(f, "unix:{}", p.display()),
            Target::Http { addr, .. } => write!(f, "http://{addr}"),
        }
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot connect to {target}: {source}")]
    Connect { target: String, source: std::io::Error },
    #[error("{target}: no answer within {timeout:?}")]
    Timeout { target: String, timeout: Duration },
    #[error("{target}: {message}")]
    Http { target: String, message: String },
}

/// An answer: its status and its body (JSON when it is JSON, else the
/// text as a JSON string; `null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

/// `http://HOST:PORT[/]` → the address (loopback or any IP; no name
/// lookup, no TLS: the API is plain HTTP on a management address).
pub fn parse_url(url: &str) -> Result<SocketAddr, String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("--url {url:?}: only http://IP:PORT is supported"))?;
    let hostport = rest.trim_end_matches('/');
    let hostport = hostport.replace("localhost", "127.0.0.1");
    hostport.parse().map_err(|_| format!("--url {url:?}: expected http://IP:PORT"))
}

/// Percent-encodes one path segment (everything but RFC 3986's
/// unreserved characters).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Whether something accepts connections at `path` now.
pub fn socket_answers(path: &Path) -> Result<(), std::io::Error> {
    std::os::unix::net::UnixStream::connect(path).map(drop)
}

impl Target {
    /// Sends one request; `body` as JSON.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<Answer, ClientError> {
        let target = self.to_string();
        match tokio::time::timeout(timeout, self.send(method, path_and_query, body)).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Timeout { target, timeout }),
        }
    }

    async fn send(&self, method: Method, path_and_query: &str, body: Option<&Value>) -> Result<Answer, ClientError> {
        let target = self.to_string();
        let connect_err = |source| ClientError::Connect { target: target.clone(), source };
        let mut req = Request::builder().method(method).uri(path_and_query);
        let host = match self {
            Target::Socket(_) => "localhost".to_string(),
            Target::Http { addr, .. } => addr.to_string(),
        };
        req = req.header(header::HOST, host).header(header::ACCEPT, "application/json");
        if let Target::Http { key: Some(key), .. } = self {
            let encoded = base64::engine::general_purpose::STANDARD.encode(key.as_bytes());
            req = req.header(header::AUTHORIZATION, format!("Basic {encoded}"));
        }
        let bytes = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(bytes))
            .map_err(|e| ClientError::Http { target: target.clone(), message: e.to_string() })?;
        match self {
            Target::Socket(path) => {
                let stream = tokio::net::UnixStream::connect(path).await.map_err(connect_err)?;
                exchange(stream, req, &target).await
            }
            Target::Http { addr, .. } => {
                let stream = tokio::net::TcpStream::connect(addr).await.map_err(connect_err)?;
                exchange(stream, req, &target).await
            }
        }
    }
}

async fn exchange<S>(stream: S, req: Request<Full<Bytes>>, target: &str) -> Result<Answer, ClientError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let http = |e: hyper::Error| ClientError::Http { target: target.to_string(), message: e.to_string() };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
    let driver = tokio::spawn(conn);
    let res = sender.send_request(req).await.map_err(http)?;
    let status = res.status();
    let collected = res.into_body().collect().await.map_err(http)?.to_bytes();
    driver.abort();
    let body = if collected.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&collected)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&collected).into_owned()))
    };
    Ok(Answer { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_urls() {
        assert_eq!(segment("a/b #+$%"), "a%2Fb%20%23%2B%24%25");
        assert_eq!(segment("dev-1_x.~"), "dev-1_x.~");
        assert_eq!(parse_url("http://127.0.0.1:18083/"), Ok(SocketAddr::from(([127, 0, 0, 1], 18083))));
        assert_eq!(parse_url("http://localhost:1"), Ok(SocketAddr::from(([127, 0, 0, 1], 1))));
        assert!(parse_url("https://127.0.0.1:1").is_err());
        assert!(parse_url("http://example.org").is_err());
    }
}
