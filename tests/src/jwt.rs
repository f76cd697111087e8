//! JWT test kit: keys and tokens made by independent JOSE tools (PyJWT and
//! jwcrypto from PyPI, driven by `tests/jwt_support/make_tokens.py`), for
//! tests/tests/jwt*.rs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

/// `alg` → (key file, case → token).
pub type Tokens = BTreeMap<String, (String, BTreeMap<String, String>)>;

/// Makes keys for every algorithm in `dir` and tokens for `sub` that live
/// `life_secs` (see the script for the cases).
pub fn make_tokens(dir: &Path, sub: &str, life_secs: u64) -> Tokens {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("jwt_support/make_tokens.py");
    // Through `python` (bounded at 60 s): key generation is slow on a
    // loaded machine.
    python(
        "import runpy, sys; sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')",
        &[script.to_str().expect("utf-8 path"), dir.to_str().expect("utf-8 dir"), sub, &life_secs.to_string()],
    );
    let text = std::fs::read_to_string(dir.join("tokens.json")).expect("tokens.json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("tokens.json is JSON");
    let mut t = Tokens::new();
    for (alg, entry) in v.as_object().expect("object") {
        let key = entry["key"].as_str().expect("key").to_string();
        let cases = entry["cases"]
            .as_object()
            .expect("cases")
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().expect("token").to_string()))
            .collect();
        t.insert(alg.clone(), (key, cases));
    }
    t
}

/// Runs `python3 -c <code> <args…>` and returns its standard output
/// (trimmed); panics if it fails or runs past 60 s.
pub fn python(code: &str, args: &[&str]) -> String {
    use std::io::Read;
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(code)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python3");
    let mut out = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let end = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("python3 did not exit within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "python3 failed:\n{err}");
    reader.join().expect("reader").trim().to_string()
}

/// An HS256 token over `claims` (a JSON object), signed by PyJWT.
pub fn hs256(secret: &str, claims: &serde_json::Value) -> String {
    python(
        "import jwt, json, sys; print(jwt.encode(json.loads(sys.argv[1]), sys.argv[2], algorithm='HS256'))",
        &[&claims.to_string(), secret],
    )
}

/// Seconds since the epoch.
pub fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

/// An HTTPS endpoint on 127.0.0.1 for the JWKS and introspection tests
/// (hyper, rustls with a throwaway CA): it answers each request with what
/// the test's `answer` function says, counts requests and keeps the last
/// request bodies. Stops when dropped.
pub struct Endpoint {
    pub addr: std::net::SocketAddr,
    /// The CA file to give the broker (`tls.ca_file`).
    pub ca_file: std::path::PathBuf,
    state: std::sync::Arc<EndpointState>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// One request the endpoint got: its headers and body.
pub type Request = (Vec<(String, String)>, Vec<u8>);

/// What the endpoint answers: from the request (method, body) to (status, body).
pub type Answer = Box<dyn Fn(&str, &[u8]) -> (u16, String) + Send + Sync>;

struct EndpointState {
    answer: std::sync::Mutex<Answer>,
    count: std::sync::atomic::AtomicU64,
    bodies: std::sync::Mutex<Vec<Request>>,
}

impl Endpoint {
    pub async fn start(answer: Answer) -> Endpoint {
        use std::sync::Arc;
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = crate::net::Ca::new("jwt test CA");
        let ca_file = ca.write(dir.path(), "ca.pem");
        let leaf = ca.server("127.0.0.1");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let certs =
            rustls_pemfile::certs(&mut leaf.cert_pem.as_bytes()).collect::<Result<Vec<_>, _>>().expect("server certs");
        let key = rustls_pemfile::private_key(&mut leaf.key_pem.as_bytes()).expect("key").expect("a key");
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocols")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server cert");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let state = Arc::new(EndpointState {
            answer: std::sync::Mutex::new(answer),
            count: Default::default(),
            bodies: Default::default(),
        });
        let st = Arc::clone(&state);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        let acceptor = acceptor.clone();
                        let st = Arc::clone(&st);
                        conns.spawn(async move {
                            let Ok(Ok(tls)) =
                                tokio::time::timeout(std::time::Duration::from_secs(5), acceptor.accept(stream)).await
                            else {
                                return;
                            };
                            let service = hyper::service::service_fn(move |req| respond(Arc::clone(&st), req));
                            let _ = hyper::server::conn::http1::Builder::new()
                                .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                                .await;
                        });
                    }
                    Some(_) = conns.join_next(), if !conns.is_empty() => {}
                }
            }
        });
        Endpoint { addr, ca_file, state, task, _dir: dir }
    }

    /// `https://127.0.0.1:PORT<path>`.
    pub fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// The broker's `tls = { … }` for this endpoint.
    pub fn tls(&self) -> String {
        format!("tls = {{ enable = true, ca_file = {:?} }}", self.ca_file.display().to_string())
    }

    pub fn set_answer(&self, answer: Answer) {
        *self.state.answer.lock().expect("answer") = answer;
    }

    /// Requests answered so far.
    pub fn count(&self) -> u64 {
        self.state.count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The headers and body of every request (the last 100).
    pub fn requests(&self) -> Vec<Request> {
        self.state.bodies.lock().expect("bodies").clone()
    }
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("addr", &self.addr).finish()
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn respond(
    st: std::sync::Arc<EndpointState>,
    req: hyper::Request<hyper::body::Incoming>,
) -> Result<hyper::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt;
    let method = req.method().to_string();
    let headers: Vec<(String, String)> = req
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let body = match http_body_util::Limited::new(req.into_body(), 1 << 20).collect().await {
        Ok(b) => b.to_bytes().to_vec(),
        Err(_) => Vec::new(),
    };
    let (status, text) = (st.answer.lock().expect("answer"))(&method, &body);
    {
        let mut b = st.bodies.lock().expect("bodies");
        if b.len() >= 100 {
            b.remove(0);
        }
        b.push((headers, body));
    }
    st.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(text)));
    *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Signing keys with ids for JWKS tests, made by jwcrypto: a kid starting
/// with `rsa` is an RSA 2048 key (RS256), any other a P-256 key (ES256).
/// Returns kid → public JWK (JSON text, with `kid`, `alg` and `use`);
/// the private keys stay in `dir` for [`sign_with`].
pub fn jwks_keys(dir: &Path, kids: &[&str]) -> BTreeMap<String, String> {
    let code = r#"
import json, os, sys
from jwcrypto import jwk
out = {}
d = sys.argv[1]
for kid in sys.argv[2:]:
    if kid.startswith("rsa"):
        k = jwk.JWK.generate(kty="RSA", size=2048, kid=kid, alg="RS256", use="sig")
    else:
        k = jwk.JWK.generate(kty="EC", crv="P-256", kid=kid, alg="ES256", use="sig")
    with open(os.path.join(d, kid + ".key.pem"), "wb") as f:
        f.write(k.export_to_pem(private_key=True, password=None))
    out[kid] = k.export_public()
print(json.dumps(out))
"#;
    let mut args = vec![dir.to_str().expect("utf-8 dir")];
    args.extend_from_slice(kids);
    let v: BTreeMap<String, String> = serde_json::from_str(&python(code, &args)).expect("keys JSON");
    v
}

/// A JWKS document of these public keys.
pub fn jwks_doc(keys: &[&String]) -> String {
    format!("{{\"keys\": [{}]}}", keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
}

/// A token signed by PyJWT with the private key of `kid` (from
/// [`jwks_keys`]), its `kid` in the header.
pub fn sign_with(dir: &Path, kid: &str, claims: &serde_json::Value) -> String {
    let code = r#"
import json, os, sys, jwt
d, kid, claims = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
key = open(os.path.join(d, kid + ".key.pem"), "rb").read()
alg = "RS256" if kid.startswith("rsa") else "ES256"
print(jwt.encode(claims, key, algorithm=alg, headers={"kid": kid}))
"#;
    python(code, &[dir.to_str().expect("utf-8 dir"), kid, &claims.to_string()])
}
