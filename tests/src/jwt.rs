//! JWT test kit: keys and tokens made by independent JOSE tools (PyJWT and
//! jwcrypto from PyPI, driven by `tests/jwt_support/make_tokens.py`), for
//! tests/tests/jwt*.rs.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use crate::backend::run_bounded;

/// `alg` → (key file, case → token).
pub type Tokens = BTreeMap<String, (String, BTreeMap<String, String>)>;

/// Makes keys for every algorithm in `dir` and tokens for `sub` that live
/// `life_secs` (see the script for the cases).
pub fn make_tokens(dir: &Path, sub: &str, life_secs: u64) -> Tokens {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("jwt_support/make_tokens.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(dir).arg(sub).arg(life_secs.to_string());
    let (ok, err) = run_bounded(&mut cmd);
    assert!(ok, "make_tokens.py failed (PyJWT and jwcrypto installed? scripts/test.sh installs them):\n{err}");
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
/// (trimmed); panics if it fails or runs past 30 s.
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
    let end = Instant::now() + Duration::from_secs(30);
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
