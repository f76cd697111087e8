//! How each provider kind is built from its config table: one function per
//! kind, named on that kind's line of the provider table in
//! [`crate::config::security`] (the only place that lists the kinds; a
//! backend kind is built by its crate's `auth_provider` / `acl_provider`).
//! I/O happens here: files are read, policy directories watched, built-in
//! user stores opened. Errors name their file (and line); the table
//! prefixes the provider's key (`auth.password_file.devices`).

use std::sync::Arc;
use std::time::Duration;

use portcullis_acl::defaults::{default_rules, StaticRules};
use portcullis_acl::file::AclFile;
use portcullis_acl::inline::InlineProvider;
use portcullis_acl::mosquitto::MosquittoAcl;
use portcullis_acl::policy_dir::{PolicyDir, PolicyKey};
use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;
use portcullis_auth::providers::anonymous::Anonymous;
use portcullis_auth::providers::certificate::Certificate;
use portcullis_auth::providers::client_id::{ClientIdEntry, ClientIdList};
use portcullis_auth::providers::ip::IpProvider;
use portcullis_auth::providers::password_file::PasswordFile;
use portcullis_backends::builtin::{self, OpenMode, UserStore};
use portcullis_backends::common::CallPolicy;
use portcullis_core::provider::OnError;

use crate::config::security::{
    AclFileConfig, AnonymousConfig, CertificateAuthConfig, ClientIdConfig, IpAuthConfig, OnErrorName,
    PasswordFileConfig, PlainAclConfig, PolicyDirConfig, PolicyKeyName,
};

/// A built provider with its call policy (`timeout`, `on_error`).
pub type Built<P> = (P, Duration, OnError);

/// What building collects besides the providers.
#[derive(Debug)]
pub struct Context {
    /// How built-in user stores are opened (created, or only read by
    /// `--check-config`).
    pub mode: OpenMode,
    /// The built-in user stores opened.
    pub stores: Vec<Arc<UserStore>>,
    /// Providers that read a file, for SIGHUP.
    pub files: Vec<FileSource>,
    /// Watched policy directories (holding them keeps the watchers alive).
    pub dirs: Vec<Arc<PolicyDir>>,
}

impl Context {
    pub fn new(mode: OpenMode) -> Context {
        Context { mode, stores: Vec::new(), files: Vec::new(), dirs: Vec::new() }
    }
}

/// A provider that reads a file and re-reads it on SIGHUP.
#[derive(Debug)]
pub enum FileSource {
    Passwords(Arc<PasswordFile>),
    ClientIds(Arc<ClientIdList>),
    Acl(Arc<AclFile>),
    Mosquitto(Arc<MosquittoAcl>),
}

impl FileSource {
    /// Re-reads the file: what it is (for the log), the file, and how many
    /// entries it has now, or why it was not reloaded.
    pub fn reload(&self) -> (&'static str, String, Result<usize, String>) {
        match self {
            FileSource::Passwords(f) => (
                "password file",
                f.path().display().to_string(),
                f.reload().map(|()| f.len()).map_err(|e| e.to_string()),
            ),
            // Only lists read from a file are kept here.
            FileSource::ClientIds(f) => (
                "client id file",
                f.path().map_or_else(String::new, |p| p.display().to_string()),
                f.reload().map_err(|e| e.to_string()),
            ),
            FileSource::Acl(f) => ("ACL file", f.path().display().to_string(), f.reload().map_err(|e| e.to_string())),
            FileSource::Mosquitto(f) => {
                ("Mosquitto acl_file", f.path().display().to_string(), f.reload().map_err(|e| e.to_string()))
            }
        }
    }
}

fn on_error(o: OnErrorName) -> OnError {
    match o {
        OnErrorName::Deny => OnError::Deny,
        OnErrorName::Ignore => OnError::Ignore,
    }
}

/// A backend's provider with the call policy from its table.
pub fn backend<P>(p: P, c: &impl CallPolicy) -> Built<P> {
    (p, c.timeout(), c.on_error())
}

type R<P> = anyhow::Result<Built<P>>;

pub async fn anonymous(name: &str, c: &AnonymousConfig, _: &mut Context) -> R<DynAuthProvider> {
    Ok((Arc::new(Anonymous::new(name.to_string(), c.allow_from.clone())), c.timeout, on_error(c.on_error)))
}

pub async fn client_id(name: &str, c: &ClientIdConfig, cx: &mut Context) -> R<DynAuthProvider> {
    // Validation allows exactly one of `path` and `clients`.
    let list = Arc::new(match &c.path {
        Some(path) => ClientIdList::load(name.to_string(), path)?,
        None => ClientIdList::new(
            name.to_string(),
            c.clients.iter().map(|e| ClientIdEntry { client_id: e.client_id.clone(), from: e.from }).collect(),
        ),
    });
    if c.path.is_some() {
        cx.files.push(FileSource::ClientIds(Arc::clone(&list)));
    }
    Ok((list, c.timeout, on_error(c.on_error)))
}

pub async fn password_file(name: &str, c: &PasswordFileConfig, cx: &mut Context) -> R<DynAuthProvider> {
    let digest = c.hash.map(|h| h.to_hash_config_at("hash")).transpose().map_err(anyhow::Error::msg)?;
    let p = Arc::new(PasswordFile::load(name.to_string(), &c.path, digest)?);
    cx.files.push(FileSource::Passwords(Arc::clone(&p)));
    Ok((p, c.timeout, on_error(c.on_error)))
}

pub async fn ip(name: &str, c: &IpAuthConfig, _: &mut Context) -> R<DynAuthProvider> {
    Ok((Arc::new(IpProvider::new(name.to_string(), c.allow.clone(), c.deny.clone())), c.timeout, on_error(c.on_error)))
}

pub async fn certificate(name: &str, c: &CertificateAuthConfig, _: &mut Context) -> R<DynAuthProvider> {
    Ok((Arc::new(Certificate::new(name.to_string(), c.match_username)), c.timeout, on_error(c.on_error)))
}

pub async fn builtin_auth(name: &str, c: &builtin::AuthConfig, cx: &mut Context) -> R<DynAuthProvider> {
    let (p, store) = builtin::auth_provider(name, c, cx.mode).await?;
    cx.stores.push(store);
    Ok(backend(p, c))
}

pub async fn acl_file(name: &str, c: &AclFileConfig, cx: &mut Context) -> R<DynAclProvider> {
    let p = Arc::new(AclFile::load(name.to_string(), &c.path)?);
    cx.files.push(FileSource::Acl(Arc::clone(&p)));
    Ok((p, c.timeout, on_error(c.on_error)))
}

pub async fn mosquitto(name: &str, c: &AclFileConfig, cx: &mut Context) -> R<DynAclProvider> {
    let p = Arc::new(MosquittoAcl::load(name.to_string(), &c.path)?);
    cx.files.push(FileSource::Mosquitto(Arc::clone(&p)));
    Ok((p, c.timeout, on_error(c.on_error)))
}

pub async fn policy_dir(name: &str, c: &PolicyDirConfig, cx: &mut Context) -> R<DynAclProvider> {
    let key = match c.key {
        PolicyKeyName::ClientId => PolicyKey::ClientId,
        PolicyKeyName::Username => PolicyKey::Username,
    };
    let p = PolicyDir::start(name.to_string(), c.dir.clone(), key, c.poll)?;
    cx.dirs.push(Arc::clone(&p));
    Ok((p, c.timeout, on_error(c.on_error)))
}

pub async fn inline(name: &str, c: &PlainAclConfig, _: &mut Context) -> R<DynAclProvider> {
    Ok((Arc::new(InlineProvider::new(name.to_string())), c.timeout, on_error(c.on_error)))
}

pub async fn defaults(name: &str, c: &PlainAclConfig, _: &mut Context) -> R<DynAclProvider> {
    Ok((Arc::new(StaticRules::new(name.to_string(), default_rules())), c.timeout, on_error(c.on_error)))
}

pub async fn builtin_acl(name: &str, c: &builtin::AclConfig, cx: &mut Context) -> R<DynAclProvider> {
    let (p, store) = builtin::acl_provider(name, c, cx.mode).await?;
    cx.stores.push(store);
    Ok(backend(p, c))
}
