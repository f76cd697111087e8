use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use portcullis_core::enhanced::{Exchange, Purpose, Step};
use portcullis_core::gate::{AuthOutcome, DenyReason, GateFuture};
use portcullis_core::provider::{ErrorKind, ProviderError};

use super::exchange::{ScramExchange, Setup};
use super::*;

/// One user, `user` / `pencil`, with RFC 7677's salt; or a failing source.
#[derive(Debug)]
struct Source {
    fail: bool,
}

impl CredentialSource for Source {
    fn lookup<'a>(
        &'a self,
        username: &'a str,
        alg: Algorithm,
    ) -> GateFuture<'a, Result<Option<ScramCredential>, ProviderError>> {
        Box::pin(async move {
            if self.fail {
                return Err(ProviderError::new(ErrorKind::Unavailable, "down"));
            }
            let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
            Ok((username == "user").then(|| derive(alg, b"pencil", &salt, 4096)))
        })
    }
}

fn exchange(alg: Algorithm, fail: bool) -> ScramExchange {
    ScramExchange::new(Setup {
        name: "t".into(),
        alg,
        source: Arc::new(Source { fail }),
        decoy_key: [7; 32],
        decoy_iterations: 4096,
        timeout: Duration::from_secs(5),
        connect_username: None,
        purpose: Purpose::Connect,
        server_nonce: Some("%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into()),
    })
}

async fn step(x: &mut ScramExchange, msg: &str) -> Step {
    x.step(Some(Bytes::from(msg.to_string()))).await
}

fn continued(s: Step) -> String {
    match s {
        Step::Continue(b) => String::from_utf8(b.to_vec()).unwrap(),
        Step::Done(d) => panic!("done: {:?}", d.outcome),
    }
}

fn refused(s: Step) -> AuthOutcome {
    match s {
        Step::Done(d) if !matches!(d.outcome, AuthOutcome::Allow { .. }) => d.outcome,
        other => panic!("not refused: {other:?}"),
    }
}

/// RFC 7677 §3's example conversation, byte for byte.
#[tokio::test]
async fn rfc7677_example() {
    let mut x = exchange(Algorithm::Sha256, false);
    let first = continued(step(&mut x, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO").await);
    assert_eq!(first, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    let last = step(
        &mut x,
        "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    )
    .await;
    let Step::Done(d) = last else { panic!("not done") };
    assert_eq!(d.outcome, AuthOutcome::allow(false));
    assert_eq!(d.data.as_deref(), Some(&b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="[..]));
    assert_eq!(d.username.as_deref(), Some("user"));
}

/// A wrong proof, an unknown user (decoy salt, same refusal), a
/// tampered nonce or channel binding are all refused; a failing source is
/// unavailable, not a deny.
#[tokio::test]
async fn refusals() {
    let final_msg = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=";
    let bad_proof = format!("{final_msg}{}", B64.encode([0u8; 32]));
    let mut x = exchange(Algorithm::Sha256, false);
    continued(step(&mut x, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO").await);
    assert_eq!(refused(step(&mut x, &bad_proof).await), AuthOutcome::Deny(DenyReason::NotAuthorized));

    let mut x = exchange(Algorithm::Sha256, false);
    let first = continued(step(&mut x, "n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO").await);
    assert!(first.ends_with(",i=4096") && first.contains(",s="), "{first}");
    let mut again = exchange(Algorithm::Sha256, false);
    assert_eq!(first, continued(step(&mut again, "n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO").await), "stable decoy");
    assert_eq!(refused(step(&mut x, &bad_proof).await), AuthOutcome::Deny(DenyReason::NotAuthorized));

    for m in [
        "p=tls-unique,,n=user,r=abc",
        "x,,n=user,r=abc",
        "n,,m=ext,n=user,r=abc",
        "n,,n=us=er,r=abc",
        "n,a=other,n=user,r=a",
        "n,,n=user",
        "",
        "n,,n=user,r=a,b",
    ] {
        let mut x = exchange(Algorithm::Sha256, false);
        let s = step(&mut x, m).await;
        if m == "n,,n=user,r=a,b" {
            // Extensions after the nonce are allowed.
            continued(s);
            continue;
        }
        assert_eq!(refused(s), AuthOutcome::Deny(DenyReason::NotAuthorized), "{m}");
    }

    let mut x = exchange(Algorithm::Sha256, false);
    continued(step(&mut x, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO").await);
    let other_nonce = "c=biws,r=rOprNGfwEbeRWgbNEkqOX,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_eq!(refused(step(&mut x, other_nonce).await), AuthOutcome::Deny(DenyReason::NotAuthorized));

    let mut x = exchange(Algorithm::Sha256, false);
    continued(step(&mut x, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO").await);
    let other_cbind =
        "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    assert_eq!(refused(step(&mut x, other_cbind).await), AuthOutcome::Deny(DenyReason::NotAuthorized));

    let mut x = exchange(Algorithm::Sha256, true);
    assert_eq!(refused(step(&mut x, "n,,n=user,r=abc").await), AuthOutcome::Unavailable);
}

#[test]
fn derived_lengths_and_names() {
    for alg in Algorithm::ALL {
        let c = derive(alg, b"pw", b"salt", 4096);
        assert!(c.usable(alg));
        assert_eq!(Algorithm::from_name(alg.name()), Some(alg));
        assert!(!format!("{c:?}").contains("stored_key"));
    }
    assert_eq!(Algorithm::Sha512.method(), "SCRAM-SHA-512");
}
