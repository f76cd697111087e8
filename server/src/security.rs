//! Builds the auth and ACL chains, caches and guard from the config
//! (I/O happens here: files are read, policy directories watched, built-in
//! user stores opened). Load errors already name their file (and line);
//! they are reported once, prefixed with the provider's config key.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use portcullis_acl::cache::AclCache;
use portcullis_acl::chain::{AclChain, AclEntry, DenyAction};
use portcullis_acl::defaults::{default_rules, StaticRules};
use portcullis_acl::policy_dir::PolicyDir;
use portcullis_acl::provider::DynAclProvider;
use portcullis_acl::rule::Permission;
use portcullis_auth::cache::{AuthCache, AuthCacheConfig};
use portcullis_auth::chain::{AuthChain, AuthEntry, NoMatch};
use portcullis_auth::guard::{BruteForceGuard, GuardConfig};
use portcullis_auth::provider::DynAuthProvider;
use portcullis_auth::providers::anonymous::Anonymous;
use portcullis_backends::builtin::OpenMode;
use portcullis_core::metrics::{MetricSource, Scrape};
use portcullis_core::provider::OnError;

use crate::config::security::{default_loopback_nets, AllowDeny, DenyActionName, V5DenyReason};
use crate::config::Config;
use crate::gateway::{Gateway, Shared};
use crate::providers::{self, FileSource};

/// Name of the built-in provider used when `auth.chain` is empty.
pub const BUILTIN_ANONYMOUS: &str = "builtin_loopback_anonymous";
/// Name of the built-in provider used when `acl.chain` is empty.
pub const BUILTIN_DEFAULTS: &str = "builtin_defaults";

/// Every chain by name, plus what they share.
#[derive(Debug)]
pub struct Security {
    pub auth_chains: HashMap<String, Arc<AuthChain>>,
    pub acl_chains: HashMap<String, Arc<AclChain>>,
    pub shared: Arc<Shared>,
    /// True when no auth provider is configured (loopback-only default).
    pub builtin_auth: bool,
    pub v5_deny_reason: u8,
    pub check_on_delivery: bool,
    /// Password, client id and ACL files, reloaded on SIGHUP.
    files: Vec<FileSource>,
    /// Policy directories: watched, and rescanned on SIGHUP; holding them
    /// keeps their watchers alive.
    policy_dirs: Vec<Arc<PolicyDir>>,
    /// MQTT 5 enhanced-authentication methods (`[auth.scram.*]`,
    /// `[auth.enhanced_token.*]`).
    pub enhanced: Arc<crate::enhanced::EnhancedMethods>,
}

impl Security {
    /// Builds everything the broker runs with; built-in user stores are
    /// created when missing and migrated.
    pub async fn build(cfg: &Config) -> anyhow::Result<Security> {
        Security::build_with(cfg, OpenMode::Create).await
    }

    /// What `--check-config` loads: the same, except that built-in user
    /// stores are only read (a missing one is fine; nothing is created or
    /// migrated).
    pub async fn check(cfg: &Config) -> anyhow::Result<Security> {
        Security::build_with(cfg, OpenMode::CheckOnly).await
    }

    async fn build_with(cfg: &Config, mode: OpenMode) -> anyhow::Result<Security> {
        let mut cx = providers::Context::new(mode);
        let auth_providers = cfg.auth.build_providers(&mut cx).await?;
        let acl_providers = cfg.acl.build_providers(&mut cx).await?;
        let providers::Context { stores, files, dirs: policy_dirs, .. } = cx;
        let builtin_auth = cfg.auth.chain.is_empty();
        let enhanced = Arc::new(crate::enhanced::EnhancedMethods::build(&cfg.auth, mode).await?);

        let mut auth_chains = HashMap::new();
        let no_match = match cfg.auth.no_match {
            AllowDeny::Allow => NoMatch::Allow,
            AllowDeny::Deny => NoMatch::Deny,
        };
        let mut chain_lists: Vec<(String, Vec<String>)> = vec![("default".to_string(), cfg.auth.chain.clone())];
        chain_lists.extend(cfg.auth.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, list) in chain_lists {
            let entries = if list.is_empty() {
                let p: DynAuthProvider =
                    Arc::new(Anonymous::new(BUILTIN_ANONYMOUS.to_string(), default_loopback_nets()));
                vec![AuthEntry::new(p, Duration::from_secs(5), OnError::Deny)]
            } else {
                list.iter()
                    .map(|p| {
                        let (prov, timeout, oe) =
                            auth_providers.get(p).cloned().context(format!("auth provider `{p}`"))?;
                        Ok(AuthEntry::new(prov, timeout, oe))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            auth_chains.insert(name.clone(), Arc::new(AuthChain::new(name, entries, no_match)));
        }

        let mut acl_chains = HashMap::new();
        let acl_no_match = match cfg.acl.no_match {
            AllowDeny::Allow => Permission::Allow,
            AllowDeny::Deny => Permission::Deny,
        };
        let deny_action = match cfg.acl.deny_action {
            DenyActionName::Ignore => DenyAction::Ignore,
            DenyActionName::Disconnect => DenyAction::Disconnect,
        };
        let mut chain_lists: Vec<(String, Vec<String>)> = vec![("default".to_string(), cfg.acl.chain.clone())];
        chain_lists.extend(cfg.acl.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
        for (name, list) in chain_lists {
            let entries = if list.is_empty() {
                let p: DynAclProvider = Arc::new(StaticRules::new(BUILTIN_DEFAULTS.to_string(), default_rules()));
                vec![AclEntry::new(p, Duration::from_secs(5), OnError::Deny)]
            } else {
                list.iter()
                    .map(|p| {
                        let (prov, timeout, oe) =
                            acl_providers.get(p).cloned().context(format!("acl provider `{p}`"))?;
                        Ok(AclEntry::new(prov, timeout, oe))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?
            };
            acl_chains.insert(name.clone(), Arc::new(AclChain::new(name, entries, acl_no_match, deny_action)));
        }

        let c = &cfg.auth.cache;
        let auth_cache = AuthCache::new(AuthCacheConfig {
            max_entries: c.max_entries,
            ttl_allow: c.ttl_allow,
            ttl_deny: c.ttl_deny,
            jitter: c.jitter,
            stale_on_error: c.stale_on_error,
        });
        let g = &cfg.auth.guard;
        let guard = BruteForceGuard::new(GuardConfig {
            enabled: g.enabled,
            max_failures: g.max_failures,
            max_failures_per_ip: g.max_failures_per_ip,
            window: g.window,
            ban: g.ban,
            exempt: g.exempt.clone(),
        });
        let c = &cfg.acl.cache;
        let acl_cache = AclCache::new(c.max_entries, c.max_bytes, c.ttl);
        let shared = Arc::new(Shared {
            auth_cache,
            acl_cache,
            guard,
            refusal_log: portcullis_core::logsafe::LogLimiter::new(20),
        });
        // A policy file that changed must not be shadowed by cached decisions.
        for dir in &policy_dirs {
            let mut changes = dir.changes();
            let weak = Arc::downgrade(&shared);
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    while changes.changed().await.is_ok() {
                        let Some(shared) = weak.upgrade() else { return };
                        shared.acl_cache.invalidate_all();
                    }
                });
            }
        }
        // Nor may a change to a built-in user store (made by any process):
        // a deleted user, a new password or a changed rule counts from the
        // next CONNECT and action. The providers hold the stores; these
        // tasks end with them.
        for store in &stores {
            let mut changes = store.changes();
            let weak = Arc::downgrade(&shared);
            let path = store.path().display().to_string();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    while changes.changed().await.is_ok() {
                        let revision = *changes.borrow_and_update();
                        let Some(shared) = weak.upgrade() else { return };
                        shared.auth_cache.invalidate_all();
                        shared.acl_cache.invalidate_all();
                        tracing::info!(%path, revision, "user store changed: auth and ACL caches purged");
                    }
                });
            }
        }
        Ok(Security {
            auth_chains,
            acl_chains,
            shared,
            builtin_auth,
            v5_deny_reason: match cfg.acl.v5_deny_reason {
                V5DenyReason::NotAuthorized => portcullis_core::codec::reason::v5::NOT_AUTHORIZED,
                V5DenyReason::UnspecifiedError => portcullis_core::codec::reason::v5::UNSPECIFIED_ERROR,
            },
            check_on_delivery: cfg.acl.check_on_delivery,
            files,
            policy_dirs,
            enhanced,
        })
    }

    /// Re-reads every password, client id, ACL and Mosquitto acl_file and
    /// rescans policy directories (SIGHUP). A file that fails to load keeps
    /// what it had, and the error names the file and line; the auth and
    /// ACL caches are dropped either way, so the files as they are now
    /// decide the next CONNECT and the next action. Reads synchronously:
    /// the files are small, and a reload is rare. Returns how many sources
    /// were reloaded and how many kept their previous contents.
    pub fn reload(&self) -> (usize, usize) {
        let (mut reloaded, mut failed) = (0usize, 0usize);
        for source in &self.files {
            match source.reload() {
                (what, file, Ok(entries)) => {
                    reloaded += 1;
                    tracing::info!(%file, entries, "{what} reloaded");
                }
                (what, file, Err(error)) => {
                    failed += 1;
                    tracing::error!(%file, %error, "{what} not reloaded; keeping the previous one");
                }
            }
        }
        for dir in &self.policy_dirs {
            if let Err(error) = dir.reload_now() {
                failed += 1;
                tracing::error!(%error, "policy directory not rescanned; keeping the policies it had");
            }
        }
        self.shared.auth_cache.invalidate_all();
        self.shared.acl_cache.invalidate_all();
        tracing::info!(reloaded, failed, "files reloaded");
        (reloaded, failed)
    }

    /// The gateway for a listener.
    pub fn gateway(&self, auth_chain: &str, acl_chain: &str) -> anyhow::Result<Gateway> {
        Ok(Gateway {
            auth: self.auth_chains.get(auth_chain).cloned().context(format!("no auth chain `{auth_chain}`"))?,
            acl: self.acl_chains.get(acl_chain).cloned().context(format!("no acl chain `{acl_chain}`"))?,
            shared: Arc::clone(&self.shared),
            v5_deny_reason: self.v5_deny_reason,
            check_on_delivery: self.check_on_delivery,
            enhanced: Arc::clone(&self.enhanced),
        })
    }
}

impl MetricSource for Security {
    /// The auth chains' providers, then the ACL chains' (each by chain
    /// name), the auth cache, the ACL cache and the brute-force guard.
    fn collect(&self, out: &mut Scrape) {
        let mut names: Vec<&String> = self.auth_chains.keys().collect();
        names.sort();
        for n in names {
            self.auth_chains[n].collect(out);
        }
        let mut names: Vec<&String> = self.acl_chains.keys().collect();
        names.sort();
        for n in names {
            self.acl_chains[n].collect(out);
        }
        self.shared.auth_cache.collect(out);
        self.shared.acl_cache.collect(out);
        self.shared.guard.collect(out);
    }
}
