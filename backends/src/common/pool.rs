//! `pool = { ... }`: connection pool settings every pooled backend shares.

use std::time::Duration;

use portcullis_core::units;
use serde::Deserialize;

use super::BuildError;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// Connections at most.
    #[serde(default = "default_size")]
    pub size: u32,
    /// Connections kept open when idle.
    #[serde(default)]
    pub min_idle: u32,
    /// Give up opening a connection (or waiting for a free one) after this.
    #[serde(default = "default_connect_timeout", deserialize_with = "units::duration")]
    pub connect_timeout: Duration,
    /// Give up on one query or command after this.
    #[serde(default = "default_query_timeout", deserialize_with = "units::duration")]
    pub query_timeout: Duration,
    /// Close connections idle this long (`"off"`: never).
    #[serde(default = "default_idle_timeout", deserialize_with = "units::duration_or_off")]
    pub idle_timeout: Option<Duration>,
    /// Replace connections after this long (`"off"`: never).
    #[serde(default = "default_max_lifetime", deserialize_with = "units::duration_or_off")]
    pub max_lifetime: Option<Duration>,
}

pub fn default_size() -> u32 {
    8
}
pub fn default_connect_timeout() -> Duration {
    Duration::from_secs(3)
}
pub fn default_query_timeout() -> Duration {
    Duration::from_secs(3)
}
pub fn default_idle_timeout() -> Option<Duration> {
    Some(Duration::from_secs(600))
}
pub fn default_max_lifetime() -> Option<Duration> {
    Some(Duration::from_secs(1800))
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            size: default_size(),
            min_idle: 0,
            connect_timeout: default_connect_timeout(),
            query_timeout: default_query_timeout(),
            idle_timeout: default_idle_timeout(),
            max_lifetime: default_max_lifetime(),
        }
    }
}

impl PoolConfig {
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.size == 0 {
            return Err(BuildError::invalid("pool.size", "must be at least 1"));
        }
        if self.min_idle > self.size {
            return Err(BuildError::invalid("pool.min_idle", "must not exceed pool.size"));
        }
        Ok(())
    }
}
