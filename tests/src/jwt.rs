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
