//! One SCRAM conversation, server side (RFC 5802 §5):
//!
//! ```text
//! client-first  n,,n=user,r=cnonce                      (CONNECT / AUTH 0x19)
//! server-first  r=cnonce+snonce,s=salt,i=iterations     (AUTH 0x18)
//! client-final  c=biws,r=cnonce+snonce,p=proof          (AUTH 0x18)
//! server-final  v=signature                             (CONNACK / AUTH 0x00)
//! ```
//!
//! An unknown user gets a decoy salt and the configured iteration count,
//! and fails at the proof like a wrong password. The proof is compared in
//! constant time. Nothing here logs a proof, a key or a salt.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use bytes::Bytes;
use portcullis_acl::inline::InlineAcl;
use portcullis_core::enhanced::{Done, Exchange, Purpose, Step};
use portcullis_core::gate::{AuthOutcome, ClientContext, DenyReason, GateFuture};
use portcullis_core::logsafe::Peer;
use subtle::ConstantTimeEq;
use tracing::{debug, warn};

use super::{Algorithm, CredentialSource, ScramCredential};

/// What an exchange starts from (see [`super::ScramMechanism`]).
pub(super) struct Setup {
    pub name: String,
    pub alg: Algorithm,
    pub source: Arc<dyn CredentialSource>,
    pub decoy_key: [u8; 32],
    pub decoy_iterations: u32,
    pub timeout: Duration,
    /// The CONNECT's User Name, which the SCRAM user must equal if set.
    pub connect_username: Option<Arc<str>>,
    pub purpose: Purpose,
    /// Tests fix the server nonce; otherwise it is random.
    pub server_nonce: Option<String>,
}

enum State {
    First,
    Final(Box<Pending>),
    Over,
}

/// What the server keeps between its first message and the client's final.
struct Pending {
    username: String,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    nonce: String,
    /// `None`: an unknown user, answered with a decoy.
    credential: Option<ScramCredential>,
}

/// One SCRAM exchange.
pub struct ScramExchange {
    setup: Setup,
    state: State,
}

/// Why a client message was refused; the text is for the debug log only.
type Refused = &'static str;

/// The exchange's refusal.
fn refuse() -> Step {
    Done::refuse(AuthOutcome::Deny(DenyReason::NotAuthorized))
}

/// `saslname` of RFC 5802: `=2C` is `,`, `=3D` is `=`, any other `=` is
/// malformed.
fn decode_saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('=') {
        out.push_str(&rest[..i]);
        match rest.get(i + 1..i + 3) {
            Some("2C") => out.push(','),
            Some("3D") => out.push('='),
            _ => return None,
        }
        rest = &rest[i + 3..];
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

/// A nonce: printable ASCII but `,`.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// The parts of a client-first message.
struct ClientFirst<'a> {
    gs2_header: &'a str,
    bare: &'a str,
    username: String,
    nonce: &'a str,
}

fn parse_client_first(msg: &str) -> Result<ClientFirst<'_>, Refused> {
    let (cbind, rest) = msg.split_once(',').ok_or("no GS2 header")?;
    match cbind {
        "n" | "y" => {}
        c if c.starts_with("p=") => return Err("channel binding is not supported (GS2 header p=)"),
        _ => return Err("bad GS2 channel binding flag"),
    }
    let (authzid, bare) = rest.split_once(',').ok_or("no GS2 header")?;
    let gs2_header = &msg[..cbind.len() + authzid.len() + 2];
    let mut attrs = bare.split(',');
    let username = match attrs.next() {
        Some(a) if a.starts_with("m=") => return Err("mandatory extension not supported"),
        Some(a) => decode_saslname(a.strip_prefix("n=").ok_or("no username")?).ok_or("bad username")?,
        None => return Err("no username"),
    };
    let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or("no nonce")?;
    if !valid_nonce(nonce) {
        return Err("bad nonce");
    }
    if !authzid.is_empty() {
        let authzid = decode_saslname(authzid.strip_prefix("a=").ok_or("bad authzid")?).ok_or("bad authzid")?;
        if authzid != username {
            return Err("authorization identity other than the user");
        }
    }
    Ok(ClientFirst { gs2_header, bare, username, nonce })
}

/// `(client-final-without-proof, channel binding, nonce, proof)`.
fn parse_client_final(msg: &str) -> Result<(&str, &str, &str, Vec<u8>), Refused> {
    let i = msg.rfind(",p=").ok_or("no proof")?;
    let without_proof = &msg[..i];
    let proof = B64.decode(&msg[i + 3..]).map_err(|_| "bad proof encoding")?;
    let mut attrs = without_proof.split(',');
    let cbind = attrs.next().and_then(|a| a.strip_prefix("c=")).ok_or("no channel binding")?;
    let nonce = attrs.next().and_then(|a| a.strip_prefix("r=")).ok_or("no nonce")?;
    Ok((without_proof, cbind, nonce, proof))
}

fn server_nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 18];
    rand::thread_rng().fill_bytes(&mut b);
    B64.encode(b)
}

impl std::fmt::Debug for ScramExchange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = match self.state {
            State::First => "first",
            State::Final(_) => "final",
            State::Over => "over",
        };
        f.debug_struct("ScramExchange").field("mechanism", &self.setup.name).field("state", &state).finish()
    }
}

impl ScramExchange {
    pub(super) fn new(setup: Setup) -> ScramExchange {
        ScramExchange { setup, state: State::First }
    }

    async fn first(&mut self, data: Option<Bytes>) -> Step {
        let Some(data) = data else {
            debug!(mechanism = %self.setup.name, "SCRAM client-first missing");
            return refuse();
        };
        let Ok(msg) = std::str::from_utf8(&data) else {
            debug!(mechanism = %self.setup.name, "SCRAM client-first not UTF-8");
            return refuse();
        };
        let first = match parse_client_first(msg) {
            Ok(f) => f,
            Err(why) => {
                debug!(mechanism = %self.setup.name, why, "SCRAM client-first refused");
                return refuse();
            }
        };
        if self.setup.connect_username.as_deref().is_some_and(|u| u != first.username) {
            debug!(mechanism = %self.setup.name, "SCRAM user is not the CONNECT's User Name");
            return refuse();
        }
        let s = &self.setup;
        let looked_up = tokio::time::timeout(s.timeout, s.source.lookup(&first.username, s.alg)).await;
        let credential = match looked_up {
            Ok(Ok(Some(c))) if c.usable(s.alg) => Some(c),
            Ok(Ok(Some(_))) => {
                warn!(mechanism = %s.name, username = %Peer(&first.username), "stored SCRAM credential unusable (key length, iterations or salt); refused");
                None
            }
            Ok(Ok(None)) => None,
            Ok(Err(e)) => {
                warn!(mechanism = %s.name, error = %e, "SCRAM credential source failed");
                return Done::refuse(AuthOutcome::Unavailable);
            }
            Err(_) => {
                warn!(mechanism = %s.name, after = ?s.timeout, "SCRAM credential source timed out");
                return Done::refuse(AuthOutcome::Unavailable);
            }
        };
        let (salt, iterations) = match &credential {
            Some(c) => (c.salt.clone(), c.iterations),
            None => {
                let mut salt = s.alg.hmac(&s.decoy_key, first.username.as_bytes());
                salt.truncate(16);
                (salt, s.decoy_iterations)
            }
        };
        let nonce = format!("{}{}", first.nonce, s.server_nonce.clone().unwrap_or_else(server_nonce));
        let server_first = format!("r={nonce},s={},i={iterations}", B64.encode(&salt));
        let reply = Bytes::from(server_first.clone().into_bytes());
        self.state = State::Final(Box::new(Pending {
            username: first.username,
            gs2_header: first.gs2_header.to_string(),
            client_first_bare: first.bare.to_string(),
            server_first,
            nonce,
            credential,
        }));
        Step::Continue(reply)
    }

    fn last(&mut self, p: Pending, data: Option<Bytes>) -> Step {
        let name = &self.setup.name;
        let Some(msg) = data.as_deref().and_then(|d| std::str::from_utf8(d).ok()) else {
            debug!(mechanism = %name, "SCRAM client-final missing or not UTF-8");
            return refuse();
        };
        let (without_proof, cbind, nonce, proof) = match parse_client_final(msg) {
            Ok(parts) => parts,
            Err(why) => {
                debug!(mechanism = %name, why, "SCRAM client-final refused");
                return refuse();
            }
        };
        if B64.decode(cbind).ok().as_deref() != Some(p.gs2_header.as_bytes()) {
            debug!(mechanism = %name, "SCRAM channel binding differs from the GS2 header");
            return refuse();
        }
        if nonce != p.nonce {
            debug!(mechanism = %name, "SCRAM nonce differs");
            return refuse();
        }
        let alg = self.setup.alg;
        let auth_message = format!("{},{},{}", p.client_first_bare, p.server_first, without_proof);
        // A decoy is checked against a key nothing matches, at the same cost.
        let decoy = vec![0u8; alg.key_len()];
        let stored_key = p.credential.as_ref().map_or(&decoy, |c| &c.stored_key);
        let signature = alg.hmac(stored_key, auth_message.as_bytes());
        let proof_ok = proof.len() == signature.len() && {
            let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
            bool::from(alg.hash(&client_key).ct_eq(stored_key))
        };
        let Some(credential) = p.credential.filter(|_| proof_ok) else {
            debug!(mechanism = %name, username = %Peer(&p.username), "SCRAM proof refused");
            // Named, so that the brute-force guard counts it against this
            // user as well as the address.
            return Step::Done(Done {
                outcome: AuthOutcome::Deny(DenyReason::NotAuthorized),
                data: None,
                username: Some(Arc::from(p.username)),
            });
        };
        let server_signature = alg.hmac(&credential.server_key, auth_message.as_bytes());
        let context = credential.inline_acl.map(|rules| Arc::new(InlineAcl(rules)) as ClientContext);
        debug!(mechanism = %name, username = %Peer(&p.username), purpose = ?self.setup.purpose, "SCRAM proof accepted");
        Step::Done(Done {
            outcome: AuthOutcome::Allow { superuser: credential.superuser, context, expires_at: None },
            data: Some(Bytes::from(format!("v={}", B64.encode(server_signature)).into_bytes())),
            username: Some(Arc::from(p.username)),
        })
    }
}

impl Exchange for ScramExchange {
    fn step(&mut self, data: Option<Bytes>) -> GateFuture<'_, Step> {
        Box::pin(async move {
            match std::mem::replace(&mut self.state, State::Over) {
                State::First => self.first(data).await,
                State::Final(p) => self.last(*p, data),
                State::Over => refuse(),
            }
        })
    }
}
