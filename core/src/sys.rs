//! `$SYS` topics in emqttd's layout: `$SYS/brokers` (the running nodes'
//! names, comma-separated: this node alone in single-node mode, the
//! cluster's node list otherwise), and under `$SYS/brokers/<node>/`:
//! `version`, `sysdescr`, `uptime`, `datetime`, and every metric of the
//! registry that names a `$SYS` topic (`stats/*`, `metrics/*`, `auth/*`,
//! `acl/*`, `listeners/*`: see [`crate::metrics`]), published every
//! `sys.interval`, retained so a new subscriber sees the latest values at
//! once. Presence events
//! (`clients/<clientid>/connected|disconnected`) come from the presence
//! module (`portcullis-modules`), built on the hooks; [`topic_level`] is
//! how a client id becomes one level of such a topic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::broker::{Broker, VERSION};

fn base(broker: &Broker) -> String {
    format!("$SYS/brokers/{}", broker.settings.node_name)
}

/// A client id as one topic level: `%`, `/`, `+` and `#` percent-encoded
/// (`a/b` becomes `a%2Fb`), so that no client id adds levels to, or
/// wildcards into, the presence topics; other ids are used as they are.
pub fn topic_level(id: &str) -> std::borrow::Cow<'_, str> {
    if !id.contains(['%', '/', '+', '#']) {
        return std::borrow::Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(id.len() + 8);
    for c in id.chars() {
        match c {
            '%' => out.push_str("%25"),
            '/' => out.push_str("%2F"),
            '+' => out.push_str("%2B"),
            '#' => out.push_str("%23"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

fn format_uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (days, h, m, sec) = (s / 86400, (s / 3600) % 24, (s / 60) % 60, s % 60);
    let mut out = String::new();
    if days > 0 {
        out.push_str(&format!("{days} days, "));
    }
    if days > 0 || h > 0 {
        out.push_str(&format!("{h} hours, "));
    }
    if days > 0 || h > 0 || m > 0 {
        out.push_str(&format!("{m} minutes, "));
    }
    out.push_str(&format!("{sec} seconds"));
    out
}

/// Publishes every periodic `$SYS` topic once: the node's description,
/// then every metric of one [`Broker::scrape`] (the registry Prometheus
/// reads too, so the two agree). A metric topic published last time and
/// absent now (a module switched off) is cleared once, with an empty
/// retained value, so no subscriber reads a stale figure.
pub fn publish_all(broker: &Broker) {
    let b = base(broker);
    if broker.remote().is_none() {
        // emqttd's node list; in a cluster the node list publishes it.
        broker.publish_sys("$SYS/brokers", broker.settings.node_name.clone(), true);
    }
    let pub_ = |t: &str, v: String| broker.publish_sys(&format!("{b}/{t}"), v, true);
    pub_("version", VERSION.to_string());
    pub_("sysdescr", "Portcullis MQTT broker".to_string());
    pub_("uptime", format_uptime(broker.started.elapsed()));
    pub_("datetime", humanish_datetime());
    let values = broker.scrape().sys_values();
    let now: HashSet<String> = values.iter().map(|(t, _)| t.clone()).collect();
    let gone: Vec<String> = {
        let mut last = broker.sys_topics.lock();
        let gone = last.difference(&now).cloned().collect();
        *last = now;
        gone
    };
    for (topic, value) in values {
        pub_(&topic, value);
    }
    for topic in gone {
        pub_(&topic, String::new());
    }
}

/// `YYYY-MM-DD HH:MM:SS` in UTC, without a date crate.
fn humanish_datetime() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, (rem / 60) % 60, rem % 60)
}

/// Runs the periodic `$SYS` publisher until shutdown.
pub fn spawn(broker: Arc<Broker>) {
    let Some(interval) = broker.settings.sys.interval else {
        publish_all(&broker);
        return;
    };
    tokio::spawn(async move {
        let mut shutdown = broker.shutdown_signal();
        let mut tick = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    publish_all(&broker);
                    broker.retained.purge_expired(std::time::Instant::now());
                }
                _ = shutdown.changed() => return,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_stay_one_level() {
        assert_eq!(super::topic_level("dev-1"), "dev-1");
        assert_eq!(super::topic_level("a/b"), "a%2Fb");
        assert_eq!(super::topic_level("x/+/#%"), "x%2F%2B%2F%23%25");
    }

    #[test]
    fn uptime_format() {
        assert_eq!(format_uptime(Duration::from_secs(5)), "5 seconds");
        assert_eq!(format_uptime(Duration::from_secs(3725)), "1 hours, 2 minutes, 5 seconds");
    }

    #[test]
    fn datetime_shape() {
        let s = humanish_datetime();
        assert_eq!(s.len(), 19, "{s}");
        assert!(s.starts_with("20"), "{s}");
    }
}
