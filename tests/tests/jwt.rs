//! `[auth.jwt.*]` through the real broker, with keys and tokens made by
//! independent JOSE tools (PyJWT and jwcrypto from PyPI, driven by
//! `jwt_support/make_tokens.py`): for every algorithm, only the valid
//! tokens get in; expired, not-yet-valid, wrong-audience, wrong-key,
//! `alg: none` and algorithm-confusion tokens are refused as bad
//! credentials (v5 0x86, 3.1.1 0x04), never as an outage.
//!
//! The auth cache is off unless a test is about it, so every CONNECT
//! reaches the provider.

use std::path::Path;
use std::process::Command;

use portcullis_core::codec::ProtocolVersion;
use portcullis_tests::backend::*;
use portcullis_tests::jwt::make_tokens;
use portcullis_tests::Broker;

const V5: ProtocolVersion = ProtocolVersion::V5;
const V3: ProtocolVersion = ProtocolVersion::V311;

/// Config head: the one chain, no cache, no guard.
fn head(chain: &str) -> String {
    format!("[auth]\nchain = [{chain:?}]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n")
}

/// The key lines of a provider for `alg` with the key at `key`.
fn key_lines(alg: &str, key: &str) -> String {
    if alg.starts_with("HS") {
        format!("algorithm = {alg:?}\nsecret = {{ file = {key:?} }}\n")
    } else {
        format!("algorithm = {alg:?}\npublic_key = {key:?}\n")
    }
}

async fn code5(addr: std::net::SocketAddr, client: &str, user: &str, token: &str) -> u8 {
    let (_, c) = try_login(addr, V5, client, Some(user), Some(token)).await;
    c.unwrap_or_else(|| panic!("{client}: closed without CONNACK"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_algorithm_admits_only_valid_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = make_tokens(dir.path(), "dev1", 3600);
    assert_eq!(tokens.len(), 12, "HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA");
    for (alg, (key, cases)) in &tokens {
        let cfg = format!(
            "{}[auth.jwt.t]\n{}audience = [\"mqtt\"]\nverify_claims = {{ sub = \"${{username}}\" }}\n",
            head("t"),
            key_lines(alg, key)
        );
        let b = Broker::start(&cfg);
        for (case, token) in cases {
            let want = if case.starts_with("valid") { 0x00 } else { 0x86 };
            let got = code5(b.addr, &format!("c-{alg}-{case}"), "dev1", token).await;
            assert_eq!(got, want, "{alg} {case}: CONNACK {got:#x}, want {want:#x}");
        }
        // 3.1.1 too: valid in, forged out.
        let (_, c) = try_login(b.addr, V3, "c3", Some("dev1"), Some(&cases["valid"])).await;
        assert_eq!(c, Some(0), "{alg} valid (3.1.1)");
        let (_, c) = try_login(b.addr, V3, "c3", Some("dev1"), Some(&cases["alg_none"])).await;
        assert_eq!(c, Some(0x04), "{alg} alg none (3.1.1)");
        // verify_claims: the token's sub is dev1, not this username.
        assert_eq!(code5(b.addr, "c-other", "dev2", &cases["valid"]).await, 0x86, "{alg} sub != username");
    }
}

/// EMQX's family names: `"public-key"` takes the key type's algorithms
/// (an RSA key verifies RS256 and PS256 alike), `"hmac-based"` the three
/// HMACs; a base64 secret; the token in the username (`from`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emqx_algorithm_families_base64_secret_and_token_in_username() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = make_tokens(dir.path(), "dev1", 3600);
    let (rs_key, rs) = &tokens["RS256"];
    let cfg = format!("{}[auth.jwt.t]\nalgorithm = \"public-key\"\npublic_key = {rs_key:?}\n", head("t"));
    let b = Broker::start(&cfg);
    assert_eq!(code5(b.addr, "a", "dev1", &rs["valid"]).await, 0);
    assert_eq!(code5(b.addr, "b", "dev1", &rs["confusion"]).await, 0x86);
    assert_eq!(code5(b.addr, "c", "dev1", &rs["alg_none"]).await, 0x86);
    drop(b);

    let (hs_key, hs) = &tokens["HS384"];
    let secret = std::fs::read_to_string(hs_key).expect("secret");
    let b64 = base64_std(secret.as_bytes());
    let cfg = format!(
        "{}[auth.jwt.t]\nalgorithm = \"hmac-based\"\nsecret = {b64:?}\nsecret_base64_encoded = true\nfrom = \"username\"\n",
        head("t")
    );
    let b = Broker::start(&cfg);
    let (_, c) = try_login(b.addr, V5, "u", Some(&hs["valid"]), None).await;
    assert_eq!(c, Some(0), "token as username");
    let (_, c) = try_login(b.addr, V5, "u", Some(&hs["wrong_key"]), None).await;
    assert_eq!(c, Some(0x86), "wrong key as username");
    // No token at all: not this provider's client; no_match refuses.
    let (_, c) = try_login(b.addr, V5, "u", None, None).await;
    assert_eq!(c, Some(0x87), "no token");
}

/// A JWT provider first, a password file after it: a password that is not
/// JWT-shaped passes on; a JWT-shaped one that fails is refused there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_tokens_pass_to_the_next_provider() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = make_tokens(dir.path(), "dev1", 3600);
    let (key, cases) = &tokens["ES256"];
    let passwd = dir.path().join("passwd");
    std::fs::write(&passwd, "fileuser:file-pw\n").expect("passwd");
    let cfg = format!(
        "[auth]\nchain = [\"t\", \"file\"]\n[auth.cache]\nmax_entries = 0\n[auth.guard]\nenabled = false\n\
         [auth.jwt.t]\n{}\n[auth.password_file.file]\npath = {:?}\nhash = {{ algo = \"plain\" }}\n",
        key_lines("ES256", key),
        passwd.display().to_string()
    );
    let b = Broker::start(&cfg);
    assert_eq!(code5(b.addr, "a", "fileuser", "file-pw").await, 0, "password user");
    assert_eq!(code5(b.addr, "b", "dev1", &cases["valid"]).await, 0, "token user");
    assert_eq!(code5(b.addr, "c", "dev1", &cases["expired"]).await, 0x86, "expired token");
}

fn base64_std(b: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(b)
}

/// The Python tools are there (a clear message instead of a parse panic).
#[test]
fn python_tools_present() {
    let mut cmd = Command::new("python3");
    cmd.args(["-c", "import jwt, jwcrypto"]);
    let (ok, out) = run_bounded(&mut cmd);
    assert!(ok, "PyJWT and jwcrypto are needed (pip install PyJWT jwcrypto):\n{out}");
}

/// `portcullis auth check --token` (token on stdin) with the output and
/// exit code (0 allowed).
fn auth_check(config: &Path, args: &[&str], token: &str) -> (String, i32) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = Command::new(portcullis_tests::binary())
        .arg("--config")
        .arg(config)
        .args(["auth", "check", "--client-id", "cli"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    child.stdin.take().expect("stdin").write_all(format!("{token}\n").as_bytes()).expect("write token");
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().expect("try_wait").is_none() {
        assert!(std::time::Instant::now() < end, "auth check did not exit");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (text, out.status.code().unwrap_or(-1))
}

#[test]
fn auth_check_with_a_token_names_the_key_or_the_claim_that_decided() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = make_tokens(dir.path(), "dev1", 3600);
    let (key, cases) = &tokens["RS256"];
    let cfg = dir.path().join("portcullis.toml");
    std::fs::write(&cfg, format!("{}[auth.jwt.t]\n{}audience = [\"mqtt\"]\n", head("t"), key_lines("RS256", key)))
        .expect("config");
    let (out, rc) = auth_check(&cfg, &["--username", "dev1", "--token"], &cases["valid"]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.contains("rule: jwt public_key RS256"), "the key that decided:\n{out}");
    assert!(out.contains("\"alg\":\"RS256\"") && out.contains("expires in"), "the token shown:\n{out}");
    let (out, rc) = auth_check(&cfg, &["--username", "dev1", "--token"], &cases["expired"]);
    assert_eq!(rc, 1, "{out}");
    assert!(out.contains("claim exp: expired"), "the claim that decided:\n{out}");
    let (out, _) = auth_check(&cfg, &["--username", "dev1", "--token=password"], &cases["wrong_audience"]);
    assert!(out.contains("claim aud"), "{out}");
    let (out, _) = auth_check(&cfg, &["--username", "dev1", "--token"], &cases["confusion"]);
    assert!(out.contains("DENY") && out.contains("no key accepts HS256"), "algorithm confusion named:\n{out}");
    let (out, rc) = auth_check(&cfg, &["--username", "dev1", "--token", "--json"], &cases["valid"]);
    assert_eq!(rc, 0, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["token"]["claims"]["sub"], "dev1");
    assert_eq!(v["decision"], "allow");
}
