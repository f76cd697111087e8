//! The LDAP auth provider: finds the user, checks the password (bind as
//! the user, or compare the stored value), then decides superuser.
//!
//! * Unknown user (no entry, or a bind DN the directory does not have):
//!   Ignore, so the next provider may know them. In compare mode, after a
//!   decoy verification against the last stored value checked, so the
//!   answer takes as long as a wrong password.
//! * When the lookup uses `${username}`, the entry must hold the username
//!   in `username_attribute` exactly ([`names_user`]): directory matching
//!   ignores case, and `ALICE` must not log in as `alice`. An entry that
//!   does not is not this client's (Ignore).
//! * A missing or empty password is never sent: an empty simple bind is
//!   an anonymous bind that succeeds. A known user without a password is
//!   refused as bad credentials.
//! * A refused service account, an unreachable or frozen server, a value
//!   we cannot read: errors (the chain's `on_error`), never a deny.

use std::fmt;

use parking_lot::Mutex;

use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture, Password};
use portcullis_core::provider::{ErrorKind, ProviderError};

use super::config::{AuthConfig, Lookup, Mode, ScopeName, SuperuserConfig};
use super::conn::{self, rc, Directory, Entry};
use super::password;
use crate::common::template::{Template, Values};
use crate::common::BuildError;
use portcullis_auth::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};

pub struct LdapAuth {
    name: String,
    dir: Directory,
    mode: Mode,
    lookup: Lookup,
    /// `username_attribute` when the lookup uses `${username}` (the entry
    /// must then hold the username exactly; see [`names_user`]).
    username_attribute: Option<String>,
    password_attribute: String,
    /// Compare mode: the last stored password value checked, verified (and
    /// the result thrown away) for unknown users so they cost what a known
    /// user costs.
    decoy: Mutex<Option<Vec<u8>>>,
    superuser: SuperuserConfig,
    /// Lower-cased, space-normalised `superuser.member_of` DNs.
    member_of: Vec<String>,
    /// What to read from the user's entry.
    attrs: Vec<String>,
}

impl fmt::Debug for LdapAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LdapAuth")
            .field("name", &self.name)
            .field("dir", &self.dir)
            .field("mode", &self.mode)
            .field("lookup", &self.lookup)
            .finish_non_exhaustive()
    }
}

/// `cn=A, ou=B` and `CN=a,OU=b` are the same group for our purpose.
pub fn normalize_dn(dn: &str) -> String {
    dn.split(',').map(|rdn| rdn.trim().to_ascii_lowercase()).collect::<Vec<_>>().join(",")
}

/// Whether every value the template uses can name a directory entry as
/// written. LDAP matching folds surrounding spaces and control characters
/// away (RFC 4518), so `"alice\r\n"` or `" alice"` would find alice's
/// entry: such values name nobody here instead of being another spelling
/// of a user.
fn values_are_exact(t: &Template, values: &Values<'_>) -> bool {
    t.vars()
        .all(|var| values.get(var).is_none_or(|v| !v.chars().any(char::is_control) && v.trim() == v && !v.is_empty()))
}

/// A user DN from a template (values DN-escaped); `None` when a value is
/// missing or not exact.
pub fn render_dn(t: &Template, values: &Values<'_>) -> Option<String> {
    if !values_are_exact(t, values) {
        return None;
    }
    t.render(values, |v, out| out.push_str(&ldap3::dn_escape(v))).ok()
}

/// A search filter from a template (values filter-escaped); `None` when a
/// value is missing or not exact.
pub fn render_filter(t: &Template, values: &Values<'_>) -> Option<String> {
    if !values_are_exact(t, values) {
        return None;
    }
    t.render(values, |v, out| out.push_str(&ldap3::ldap_escape(v))).ok()
}

/// Whether `entry` is the user the client named: one of its `attribute`
/// values must equal `username` byte for byte. Directory matching ignores
/// case (and, in DNs, much else), so the entry found for `ALICE` may be
/// alice's; it is not `ALICE`'s. An entry without a readable `attribute`
/// is a configuration error (`username_attribute`), never a match.
pub fn names_user(entry: &Entry, attribute: &str, username: &str) -> Result<bool, ProviderError> {
    let values = entry.values(attribute);
    if values.is_empty() {
        return Err(ProviderError::new(
            ErrorKind::BadResponse,
            format!(
                "{} has no readable {attribute} (set username_attribute to the attribute that holds usernames)",
                entry.dn
            ),
        ));
    }
    Ok(values.iter().any(|v| v.as_slice() == username.as_bytes()))
}

/// Finds the one entry a lookup names. `Ok(None)`: no such user (or a
/// placeholder the client has no value for).
pub async fn find(
    dir: &Directory,
    lookup: &Lookup,
    values: &Values<'_>,
    attrs: &[&str],
) -> Result<Option<Entry>, ProviderError> {
    match lookup {
        Lookup::Dn(t) => {
            let Some(dn) = render_dn(t, values) else { return Ok(None) };
            dir.read(&dn, attrs).await
        }
        Lookup::Search { base, filter, scope } => {
            let Some(filter) = render_filter(filter, values) else { return Ok(None) };
            let mut found = dir.search(base, *scope, &filter, attrs).await?;
            match found.len() {
                0 => Ok(None),
                1 => Ok(found.pop()),
                n => Err(ProviderError::new(
                    ErrorKind::BadResponse,
                    format!("the user filter matched {n} entries; it must match one"),
                )),
            }
        }
    }
}

impl LdapAuth {
    pub fn new(name: &str, cfg: &AuthConfig) -> Result<LdapAuth, BuildError> {
        cfg.validate()?;
        let dir = Directory::new(name, &cfg.server_settings())?;
        let lookup = cfg.lookup()?;
        let username_attribute = lookup.uses_username().then(|| cfg.username_attribute.clone());
        let su = &cfg.superuser;
        let mut attrs = Vec::new();
        if let Some(a) = &username_attribute {
            attrs.push(a.clone());
        }
        if cfg.mode == Mode::Compare {
            attrs.push(cfg.password_attribute.clone());
        }
        if let Some(a) = &su.attribute {
            attrs.push(a.clone());
        }
        if !su.member_of.is_empty() {
            attrs.push(su.member_of_attribute.clone());
        }
        if attrs.is_empty() {
            // RFC 4511: no attributes, just the DN.
            attrs.push("1.1".to_string());
        }
        Ok(LdapAuth {
            name: name.to_string(),
            dir,
            mode: cfg.mode,
            lookup,
            username_attribute,
            password_attribute: cfg.password_attribute.clone(),
            decoy: Mutex::new(None),
            superuser: su.clone(),
            member_of: su.member_of.iter().map(|d| normalize_dn(d)).collect(),
            attrs,
        })
    }

    fn attrs(&self) -> Vec<&str> {
        self.attrs.iter().map(String::as_str).collect()
    }

    /// Whether the entry found is the client's (see [`names_user`]).
    fn is_named(&self, entry: &Entry, info: &ConnectInfo) -> Result<bool, ProviderError> {
        match &self.username_attribute {
            Some(a) => names_user(entry, a, info.username.as_deref().unwrap_or_default()),
            None => Ok(true),
        }
    }

    /// What search mode reads while finding the user.
    fn search_attrs(&self) -> Vec<&str> {
        match &self.username_attribute {
            Some(a) => vec![a.as_str()],
            None => vec!["1.1"],
        }
    }

    async fn check(&self, info: &ConnectInfo) -> Result<AuthAnswer, ProviderError> {
        let values = Values::from_connect(info);
        let password = info.password.as_ref().filter(|p| !p.expose().is_empty());
        let (entry, decision) = match (self.mode, &self.lookup) {
            (Mode::Bind, Lookup::Dn(t)) => {
                let Some(dn) = render_dn(t, &values) else { return Ok(AuthAnswer::ignore()) };
                match self.bind_user(&dn, password).await? {
                    Bound::Unknown => return Ok(AuthAnswer::ignore()),
                    Bound::Refused(reason) => (Entry::bare(dn), Err(reason)),
                    Bound::Ok(entry) if !self.is_named(&entry, info)? => return Ok(AuthAnswer::ignore()),
                    Bound::Ok(entry) => (entry, Ok(())),
                }
            }
            (Mode::Search, _) => {
                let Some(entry) = find(&self.dir, &self.lookup, &values, &self.search_attrs()).await? else {
                    return Ok(AuthAnswer::ignore());
                };
                if !self.is_named(&entry, info)? {
                    return Ok(AuthAnswer::ignore());
                }
                match self.bind_user(&entry.dn, password).await? {
                    // Found a moment ago: it is there, the bind refused.
                    Bound::Unknown => (entry, Err(DenyReason::BadCredentials)),
                    Bound::Refused(reason) => (entry, Err(reason)),
                    Bound::Ok(read) => (read, Ok(())),
                }
            }
            (Mode::Compare, _) => {
                let found = find(&self.dir, &self.lookup, &values, &self.attrs()).await?;
                let entry = match found {
                    Some(entry) if self.is_named(&entry, info)? => entry,
                    _ => {
                        self.decoy_compare(password).await;
                        return Ok(AuthAnswer::ignore());
                    }
                };
                let ok = match password {
                    Some(p) => self.compare(&entry, p).await?,
                    None => false,
                };
                let d = if ok { Ok(()) } else { Err(DenyReason::BadCredentials) };
                (entry, d)
            }
            (Mode::Bind, Lookup::Search { .. }) => {
                return Err(ProviderError::new(ErrorKind::Internal, "bind mode without user_dn"));
            }
        };
        let rule = Some(format!("ldap {}", entry.dn));
        if let Err(reason) = decision {
            return Ok(AuthAnswer::new(AuthDecision::Deny(reason), rule));
        }
        let superuser = self.is_superuser(&entry).await?;
        Ok(AuthAnswer::new(AuthDecision::Allow { superuser, inline_acl: None, expires_at: None }, rule))
    }

    /// Compare mode, unknown user: verifies the password against the last
    /// stored value checked and forgets the result.
    async fn decoy_compare(&self, password: Option<&Password>) {
        let Some(p) = password else { return };
        let Some(model) = self.decoy.lock().clone() else { return };
        let _ = password::verify(&model, p).await;
    }

    /// Binds as `dn` on a connection of its own and, on success, reads the
    /// user's entry as the user.
    async fn bind_user(&self, dn: &str, password: Option<&Password>) -> Result<Bound, ProviderError> {
        let text = password.and_then(|p| std::str::from_utf8(p.expose()).ok());
        let Some(text) = text else {
            // No (or an empty, or a non-UTF-8) password: never bind with
            // it. Whether the user exists decides Ignore or bad credentials.
            return self.refused_or_unknown(dn, DenyReason::BadCredentials).await;
        };
        let (code, conn) = self.dir.bind_as(dn, text).await?;
        match code {
            rc::SUCCESS => {
                let Some(mut ldap) = conn else {
                    return Err(ProviderError::new(ErrorKind::Internal, "bound without a connection"));
                };
                let attrs = self.attrs();
                let read = self.dir.servers.search(&mut ldap, dn, ScopeName::Base, "(objectClass=*)", &attrs).await;
                conn::close(ldap).await;
                let mut entries = read.map_err(|e| e.into_provider("reading the user's entry"))?;
                let entry = entries.pop().unwrap_or_else(|| Entry::bare(dn.to_string()));
                Ok(Bound::Ok(entry))
            }
            rc::INVALID_CREDENTIALS => self.refused_or_unknown(dn, DenyReason::BadCredentials).await,
            rc::NO_SUCH_OBJECT | rc::INVALID_DN_SYNTAX => Ok(Bound::Unknown),
            rc::INAPPROPRIATE_AUTH | rc::INSUFFICIENT_ACCESS | rc::UNWILLING_TO_PERFORM => {
                Ok(Bound::Refused(DenyReason::NotAuthorized))
            }
            other => Err(ProviderError::new(ErrorKind::Unavailable, format!("user bind: the server answered {other}"))),
        }
    }

    /// After a refused (or skipped) bind: is there such a user? The
    /// directory answers invalidCredentials for unknown DNs too.
    async fn refused_or_unknown(&self, dn: &str, reason: DenyReason) -> Result<Bound, ProviderError> {
        Ok(match self.dir.read(dn, &["1.1"]).await? {
            Some(_) => Bound::Refused(reason),
            None => Bound::Unknown,
        })
    }

    async fn compare(&self, entry: &Entry, password: &Password) -> Result<bool, ProviderError> {
        let stored = entry.values(&self.password_attribute);
        if stored.is_empty() {
            return Err(ProviderError::new(
                ErrorKind::BadResponse,
                format!("{} has no readable {} (may the service account read it?)", entry.dn, self.password_attribute),
            ));
        }
        if let Some(first) = stored.first() {
            *self.decoy.lock() = Some(first.clone());
        }
        for s in stored {
            if password::verify(s, password).await? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    async fn is_superuser(&self, entry: &Entry) -> Result<bool, ProviderError> {
        let su = &self.superuser;
        if let Some(attr) = &su.attribute {
            if entry.text_values(attr).any(|v| v.trim().eq_ignore_ascii_case(su.value.trim())) {
                return Ok(true);
            }
        }
        if !self.member_of.is_empty()
            && entry.text_values(&su.member_of_attribute).any(|g| self.member_of.contains(&normalize_dn(g)))
        {
            return Ok(true);
        }
        if !su.groups.is_empty() {
            let dn = ldap3::ldap_escape(entry.dn.as_str());
            let filter =
                format!("(|{})", su.group_member_attributes.iter().map(|a| format!("({a}={dn})")).collect::<String>());
            for group in &su.groups {
                if !self.dir.search(group, ScopeName::Base, &filter, &["1.1"]).await?.is_empty() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// What a user bind came to.
enum Bound {
    Ok(Entry),
    Refused(DenyReason),
    Unknown,
}

impl AuthProvider for LdapAuth {
    fn name(&self) -> &str {
        &self.name
    }

    fn inputs(&self) -> Inputs {
        let t = match &self.lookup {
            Lookup::Dn(t) => t,
            Lookup::Search { filter, .. } => filter,
        };
        crate::common::template::auth_inputs([t])
    }

    fn kind(&self) -> &'static str {
        "ldap"
    }

    fn health(&self) -> Option<bool> {
        Some(self.dir.health.is_up())
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        Box::pin(self.check(info))
    }
}
