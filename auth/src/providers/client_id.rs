//! `client_id`: a list of known client ids, each optionally bound to a
//! network (like emqttd's `clients.config`). A listed id from the right
//! network is admitted, from the wrong one refused; unlisted ids are
//! ignored.
//!
//! File format, one entry per line, `#` starts a comment line:
//!
//! ```text
//! # client_id [network]
//! sensor-17 10.20.0.0/16
//! dashboard 127.0.0.1
//! legacy-gateway
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ipnet::IpNet;
use parking_lot::RwLock;
use portcullis_core::gate::{ConnectInfo, DenyReason, GateFuture};
use portcullis_core::provider::ProviderError;

use super::{canonical_ip, canonical_net, parse_net, LoadError};
use crate::provider::{AuthAnswer, AuthDecision, AuthProvider, Inputs};

/// One listed client id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdEntry {
    pub client_id: String,
    /// Only from this network; `None`: from anywhere.
    pub from: Option<IpNet>,
}

#[derive(Debug)]
struct Binding {
    from: Option<IpNet>,
    /// `client_id sensor-1 from 10.0.0.0/8` or `etc/clients:3`.
    rule: String,
}

#[derive(Debug)]
pub struct ClientIdList {
    name: String,
    /// The file the list came from; `None` for a list from the config.
    path: Option<PathBuf>,
    /// Swapped whole by [`ClientIdList::reload`]; held only to read or swap.
    ids: RwLock<Arc<Table>>,
}

type Table = HashMap<String, Vec<Binding>>;

impl ClientIdList {
    /// Entries from the config; rules read `client_id <id> [from <net>]`.
    pub fn new(name: String, entries: Vec<ClientIdEntry>) -> ClientIdList {
        let mut ids: Table = HashMap::new();
        for e in entries {
            let from = e.from.map(canonical_net);
            let rule = match from {
                Some(net) => format!("client_id {} from {net}", e.client_id),
                None => format!("client_id {}", e.client_id),
            };
            ids.entry(e.client_id).or_default().push(Binding { from, rule });
        }
        ClientIdList { name, path: None, ids: RwLock::new(Arc::new(ids)) }
    }

    /// Entries from a file (see the module docs); rules read `path:line`.
    pub fn load(name: String, path: &Path) -> Result<ClientIdList, LoadError> {
        let ids = read_table(path)?;
        Ok(ClientIdList { name, path: Some(path.to_path_buf()), ids: RwLock::new(Arc::new(ids)) })
    }

    /// Reads the file again and swaps the new list in; on error the current
    /// list stays in service. A list from the config has nothing to reload.
    /// Returns the number of client ids listed.
    pub fn reload(&self) -> Result<usize, LoadError> {
        let Some(path) = &self.path else { return Ok(self.ids.read().len()) };
        let ids = read_table(path)?;
        let n = ids.len();
        *self.ids.write() = Arc::new(ids);
        Ok(n)
    }

    /// The file the list comes from, if it does.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    #[cfg(test)]
    fn parse(name: String, path: &Path, bytes: &[u8]) -> Result<ClientIdList, LoadError> {
        let ids = parse_table(path, bytes)?;
        Ok(ClientIdList { name, path: Some(path.to_path_buf()), ids: RwLock::new(Arc::new(ids)) })
    }

    /// The decision, synchronously.
    pub fn decide(&self, info: &ConnectInfo) -> AuthAnswer {
        let ids = self.ids.read();
        let Some(bindings) = ids.get(&*info.client_id) else {
            return AuthAnswer::ignore();
        };
        let peer = canonical_ip(info.peer.ip());
        if let Some(b) = bindings.iter().find(|b| b.from.is_none_or(|net| net.contains(&peer))) {
            return AuthAnswer::new(AuthDecision::allow(), Some(b.rule.clone()));
        }
        let rule = bindings.first().map(|b| match b.from {
            Some(net) => format!("{} (peer not in {net})", b.rule),
            None => b.rule.clone(),
        });
        AuthAnswer::new(AuthDecision::Deny(DenyReason::NotAuthorized), rule)
    }
}

fn read_table(path: &Path) -> Result<Table, LoadError> {
    let bytes = std::fs::read(path).map_err(|source| LoadError::Io { path: path.to_path_buf(), source })?;
    parse_table(path, &bytes)
}

fn parse_table(path: &Path, bytes: &[u8]) -> Result<Table, LoadError> {
    let mut ids: Table = HashMap::new();
    for (i, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let bad = |problem: String| LoadError::Line { path: path.to_path_buf(), line, problem };
        let text = std::str::from_utf8(raw).map_err(|_| bad("not UTF-8".to_string()))?.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let mut words = text.split_whitespace();
        let (Some(id), net, None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected `client_id [network]`".to_string()));
        };
        let from = match net {
            Some(n) => Some(parse_net(n).ok_or_else(|| bad(format!("invalid network {n:?}")))?),
            None => None,
        };
        let rule = format!("{}:{line}", path.display());
        ids.entry(id.to_string()).or_default().push(Binding { from, rule });
    }
    Ok(ids)
}

impl AuthProvider for ClientIdList {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "client_id"
    }

    fn worth_caching(&self) -> bool {
        false
    }

    fn inputs(&self) -> Inputs {
        Inputs::CLIENT_ID.union(Inputs::PEER)
    }

    fn authenticate<'a>(&'a self, info: &'a ConnectInfo) -> GateFuture<'a, Result<AuthAnswer, ProviderError>> {
        let answer = self.decide(info);
        Box::pin(async move { Ok(answer) })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;
    use crate::providers::test_support::connect;

    fn listed() -> ClientIdList {
        ClientIdList::new(
            "ids".into(),
            vec![
                ClientIdEntry { client_id: "sensor-1".into(), from: Some("10.0.0.0/8".parse().unwrap()) },
                ClientIdEntry { client_id: "sensor-1".into(), from: Some("192.168.1.0/24".parse().unwrap()) },
                ClientIdEntry { client_id: "anywhere".into(), from: None },
            ],
        )
    }

    #[tokio::test]
    async fn listed_id_from_bound_network_is_allowed() {
        let p = listed();
        let a = p.authenticate(&connect("sensor-1", None, None, "10.9.9.9:1")).await.unwrap();
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some("client_id sensor-1 from 10.0.0.0/8".into())));
        let a = p.authenticate(&connect("sensor-1", None, None, "[::ffff:192.168.1.5]:1")).await.unwrap();
        assert_eq!(a.rule.as_deref(), Some("client_id sensor-1 from 192.168.1.0/24"));
        let a = p.authenticate(&connect("anywhere", Some("u"), None, "[2001:db8::1]:1")).await.unwrap();
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some("client_id anywhere".into())));
    }

    #[tokio::test]
    async fn listed_id_from_wrong_network_is_denied() {
        let a = listed().authenticate(&connect("sensor-1", None, None, "172.16.0.1:1")).await.unwrap();
        assert_eq!(a.decision, AuthDecision::Deny(DenyReason::NotAuthorized));
        assert_eq!(a.rule.as_deref(), Some("client_id sensor-1 from 10.0.0.0/8 (peer not in 10.0.0.0/8)"));
    }

    #[tokio::test]
    async fn unlisted_ids_are_ignored() {
        let p = listed();
        for id in ["sensor-2", "Sensor-1", "", "sensor-1 "] {
            assert_eq!(p.authenticate(&connect(id, None, None, "10.0.0.1:1")).await, Ok(AuthAnswer::ignore()));
        }
    }

    #[tokio::test]
    async fn file_entries_name_their_line() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        write!(f, "# clients\n\nsensor-17 10.20.0.0/16\r\n  dashboard   127.0.0.1  \nlegacy\n# end").unwrap();
        let p = ClientIdList::load("ids".into(), f.path()).unwrap();
        let path = f.path().display().to_string();
        let a = p.authenticate(&connect("sensor-17", None, None, "10.20.3.4:1")).await.unwrap();
        assert_eq!(a, AuthAnswer::new(AuthDecision::allow(), Some(format!("{path}:3"))));
        let a = p.authenticate(&connect("dashboard", None, None, "127.0.0.1:1")).await.unwrap();
        assert_eq!(a.rule, Some(format!("{path}:4")));
        let a = p.authenticate(&connect("dashboard", None, None, "127.0.0.2:1")).await.unwrap();
        assert_eq!(a.decision, AuthDecision::Deny(DenyReason::NotAuthorized));
        assert_eq!(a.rule, Some(format!("{path}:4 (peer not in 127.0.0.1/32)")));
        let a = p.authenticate(&connect("legacy", None, None, "203.0.113.1:1")).await.unwrap();
        assert_eq!(a.rule, Some(format!("{path}:5")));
    }

    #[test]
    fn bad_lines_are_named() {
        let p = Path::new("clients.conf");
        let cases: [(&[u8], usize, &str); 3] = [
            (b"ok\nsensor 10.0.0.0/33\n", 2, "invalid network \"10.0.0.0/33\""),
            (b"# c\n\na b c\n", 3, "expected `client_id [network]`"),
            (b"\xff\xfe 10.0.0.1\n", 1, "not UTF-8"),
        ];
        for (text, line, problem) in cases {
            let e = ClientIdList::parse("ids".into(), p, text).unwrap_err();
            assert_eq!(e.to_string(), format!("clients.conf:{line}: {problem}"));
        }
        let e = ClientIdList::load("ids".into(), Path::new("/nonexistent/clients.conf")).unwrap_err();
        assert!(e.to_string().starts_with("cannot read /nonexistent/clients.conf: "), "{e}");
    }
}
