//! Bans: the brute-force guard's (`auth.guard`), listed, added and lifted
//! by an operator. A ban is on an address (`as = "peerhost"`, `who` =
//! the IP; IPv6 per /64), on one username from one address
//! (`as = "peerhost_username"`, `who` = `username@ip`), or on a client id
//! from any address (`as = "clientid"`; only an operator bans one, failures
//! never do). The guard keeps subjects and deadlines only: EMQX's `by`,
//! `reason` and `at` are accepted and not kept.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::http::StatusCode;
use portcullis_auth::guard::{BanInfo, Subject};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::{ApiError, ErrorBody, Json, Path, Query};
use crate::page::{paginate, Meta, PageParams};
use crate::Ctx;

/// Longest ban that can be set.
const MAX_BAN: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// An active ban.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Ban {
    /// `peerhost`, `peerhost_username` or `clientid`.
    #[serde(rename = "as")]
    pub kind: String,
    /// The IP, `username@ip`, or the client id.
    pub who: String,
    /// When it ends, RFC 3339.
    pub until: String,
    /// The username (client id) was longer than the guard keeps and is cut
    /// short here (lifting the ban by it will not find it).
    pub truncated: bool,
}

fn ban_view(b: &BanInfo) -> Ban {
    let (kind, who) = match &b.subject {
        Subject::Ip(ip) => ("peerhost", ip.to_string()),
        Subject::User { ip, username } => ("peerhost_username", format!("{username}@{ip}")),
        Subject::ClientId(id) => ("clientid", id.clone()),
    };
    Ban {
        kind: kind.to_string(),
        who,
        until: humantime::format_rfc3339_seconds(SystemTime::now() + b.remaining).to_string(),
        truncated: b.truncated,
    }
}

/// A page of bans.
#[derive(Debug, Serialize, ToSchema)]
pub struct BansPage {
    pub data: Vec<Ban>,
    pub meta: Meta,
}

/// The active bans, by subject.
#[utoipa::path(get, path = "/api/v5/banned", tag = "Banned", params(PageParams),
    responses((status = 200, body = BansPage), (status = 400, body = ErrorBody)))]
pub async fn list(State(ctx): State<Arc<Ctx>>, Query(page): Query<PageParams>) -> Result<Json<BansPage>, ApiError> {
    let (page, limit) = page.resolve()?;
    let out = tokio::task::spawn_blocking(move || {
        let rows: Vec<Ban> = ctx.node.security.shared.guard.bans().iter().map(ban_view).collect();
        let p = paginate(rows, page, limit);
        BansPage { data: p.data, meta: p.meta }
    })
    .await?;
    Ok(Json(out))
}

/// What a ban is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum BanKind {
    /// An address (`who` = the IP).
    Peerhost,
    /// A username from an address (`who` = `username@ip`).
    PeerhostUsername,
    /// A client id, from any address (`who` = the client id).
    Clientid,
}

impl BanKind {
    fn name(self) -> &'static str {
        match self {
            BanKind::Peerhost => "peerhost",
            BanKind::PeerhostUsername => "peerhost_username",
            BanKind::Clientid => "clientid",
        }
    }
}

/// A ban to add.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewBan {
    /// `peerhost`, `peerhost_username` or `clientid`.
    #[serde(rename = "as")]
    pub kind: BanKind,
    /// The IP, `username@ip`, or the client id.
    pub who: String,
    /// When it ends, RFC 3339 (at most ten years ahead); default: now plus
    /// `auth.guard.ban`.
    pub until: Option<String>,
    /// Who bans (logged, not kept).
    pub by: Option<String>,
    /// Why (logged, not kept).
    pub reason: Option<String>,
    /// Accepted for EMQX's clients; not kept (a ban starts now).
    #[serde(rename = "at")]
    pub _at: Option<String>,
}

fn subject(kind: BanKind, who: &str) -> Result<Subject, ApiError> {
    let ip = |s: &str| s.parse::<IpAddr>().map_err(|_| ApiError::bad_request(format!("who: not an IP address: {s:?}")));
    match kind {
        BanKind::Peerhost => Ok(Subject::Ip(ip(who)?)),
        BanKind::PeerhostUsername => {
            let (username, addr) = who
                .rsplit_once('@')
                .ok_or_else(|| ApiError::bad_request("who: `username@ip` for peerhost_username"))?;
            Ok(Subject::User { ip: ip(addr)?, username: username.to_string() })
        }
        BanKind::Clientid if who.is_empty() => Err(ApiError::bad_request("who: a client id, not empty")),
        BanKind::Clientid => Ok(Subject::ClientId(who.to_string())),
    }
}

/// The address a ban is on; none for a client id (banned from anywhere).
fn subject_ip(s: &Subject) -> Option<IpAddr> {
    match s {
        Subject::Ip(ip) | Subject::User { ip, .. } => Some(*ip),
        Subject::ClientId(_) => None,
    }
}

/// Bans an address, a username from an address, or a client id
/// (replacing a ban it has). Refused while the guard is off, or for an
/// exempt address: the ban would not be enforced (a client id ban does not
/// hold for clients from exempt networks).
#[utoipa::path(post, path = "/api/v5/banned", tag = "Banned", request_body = NewBan,
    responses((status = 200, body = Ban), (status = 400, body = ErrorBody)))]
pub async fn add(State(ctx): State<Arc<Ctx>>, Json(b): Json<NewBan>) -> Result<Json<Ban>, ApiError> {
    let guard = &ctx.node.security.shared.guard;
    let subject = subject(b.kind, &b.who)?;
    if !guard.config().enabled {
        return Err(ApiError::bad_request(
            "the brute-force guard is off (auth.guard.enabled = false): a ban would not be enforced",
        ));
    }
    if subject_ip(&subject).is_some_and(|ip| guard.is_exempt(ip)) {
        return Err(ApiError::bad_request("the address is in auth.guard.exempt: a ban would not be enforced"));
    }
    let duration = match &b.until {
        None => None,
        Some(u) => {
            let t = humantime::parse_rfc3339_weak(u)
                .map_err(|e| ApiError::bad_request(format!("until: {e} (RFC 3339)")))?;
            let d = t.duration_since(SystemTime::now()).map_err(|_| ApiError::bad_request("until: in the past"))?;
            if d > MAX_BAN {
                return Err(ApiError::bad_request("until: at most ten years ahead"));
            }
            Some(d)
        }
    };
    guard.ban(&subject, duration);
    tracing::info!(
        subject = %subject,
        by = %portcullis_core::logsafe::PeerOpt(b.by.as_deref()),
        reason = %portcullis_core::logsafe::PeerOpt(b.reason.as_deref()),
        "admin API: ban added"
    );
    let left = duration.unwrap_or(guard.config().ban);
    Ok(Json(Ban {
        kind: b.kind.name().to_string(),
        who: b.who,
        until: humantime::format_rfc3339_seconds(SystemTime::now() + left).to_string(),
        truncated: false,
    }))
}

/// Lifts a ban (and forgets the subject's failures).
#[utoipa::path(delete, path = "/api/v5/banned/{as}/{who}", tag = "Banned",
    params(("as" = BanKind, Path, description = "`peerhost`, `peerhost_username` or `clientid`"),
           ("who" = String, Path, description = "The IP, `username@ip`, or the client id, percent-encoded")),
    responses((status = 204, description = "Lifted"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn delete(
    State(ctx): State<Arc<Ctx>>,
    Path((kind, who)): Path<(BanKind, String)>,
) -> Result<StatusCode, ApiError> {
    let subject = subject(kind, &who)?;
    match ctx.node.security.shared.guard.unban(&subject) {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(ApiError::not_found("NOT_FOUND", "no such ban")),
    }
}
