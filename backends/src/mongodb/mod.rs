//! MongoDB auth and ACL providers. Not implemented yet: building one fails
//! with a clear error.

use std::sync::Arc;
use std::time::Duration;

use portcullis_acl::provider::DynAclProvider;
use portcullis_auth::provider::DynAuthProvider;
use portcullis_core::provider::OnError;
use portcullis_core::units;
use serde::Deserialize;

use crate::common::{default_timeout, BuildError};

/// `[auth.mongodb.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnError,
}

/// `[acl.mongodb.<name>]`
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclConfig {
    #[serde(default = "default_timeout", deserialize_with = "units::duration")]
    pub timeout: Duration,
    #[serde(default)]
    pub on_error: OnError,
}

crate::call_policy!(AuthConfig, AclConfig);

pub async fn auth_provider(name: &str, cfg: &AuthConfig) -> Result<DynAuthProvider, BuildError> {
    let _ = (name, cfg, Arc::new(()));
    Err(BuildError("the mongodb provider is not implemented yet".into()))
}

pub async fn acl_provider(name: &str, cfg: &AclConfig) -> Result<DynAclProvider, BuildError> {
    let _ = (name, cfg);
    Err(BuildError("the mongodb provider is not implemented yet".into()))
}
