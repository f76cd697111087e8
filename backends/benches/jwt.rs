//! Cold JWT verification cost per CONNECT: the `[auth.jwt.*]` provider's
//! whole answer (token found, key picked, signature checked by
//! jsonwebtoken, claims checked) for HS256, RS256 (2048-bit) and ES256
//! tokens, with no auth cache in front. The fixtures were made by PyJWT
//! (`jwt_fixtures/`, public keys and tokens only; `exp` in 2100).
//!
//! `cargo bench -p portcullis-backends --bench jwt`

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use portcullis_auth::provider::{AuthDecision, AuthProvider};
use portcullis_backends::jwt::{build, AuthConfig};
use portcullis_core::codec::ProtocolVersion;
use portcullis_core::gate::{ConnectInfo, Password};

fn fixture(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jwt_fixtures").join(name);
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn info(token: &str) -> ConnectInfo {
    ConnectInfo {
        client_id: Arc::from("bench-client"),
        username: Some(Arc::from("bench")),
        password: Some(Password::new(Bytes::from(token.to_string()))),
        peer: "127.0.0.1:50000".parse().expect("addr"),
        listener: Arc::from("bench"),
        protocol: ProtocolVersion::V5.into(),
        cert: None,
    }
}

fn verify(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/jwt_fixtures");
    let cases = [
        ("HS256", format!("algorithm = \"HS256\"\nsecret = {:?}\n", fixture("hs256.secret")), "hs256.jwt"),
        (
            "RS256",
            format!("algorithm = \"RS256\"\npublic_key = {:?}\n", dir.join("rs256.pub.pem").display().to_string()),
            "rs256.jwt",
        ),
        (
            "ES256",
            format!("algorithm = \"ES256\"\npublic_key = {:?}\n", dir.join("es256.pub.pem").display().to_string()),
            "es256.jwt",
        ),
    ];
    let mut g = c.benchmark_group("jwt_verify_per_connect");
    for (alg, table, token) in cases {
        let cfg: AuthConfig =
            toml::from_str(&format!("{table}audience = [\"mqtt\"]\nverify_claims = {{ sub = \"${{username}}\" }}\n"))
                .expect("table");
        let p = build("bench", &cfg).expect("provider");
        let info = info(fixture(token).trim());
        let answer = rt.block_on(p.authenticate(&info)).expect("answer");
        assert!(matches!(answer.decision, AuthDecision::Allow { .. }), "{alg}: {answer:?}");
        g.bench_function(alg, |b| b.iter(|| rt.block_on(p.authenticate(&info))));
    }
    g.finish();
}

criterion_group!(benches, verify);
criterion_main!(benches);
