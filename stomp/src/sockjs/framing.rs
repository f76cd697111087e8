//! SockJS frames: `o` (open), `h` (heartbeat), `a[…]` (messages, a JSON
//! array of strings), `c[code,"reason"]` (close); what clients send (a JSON
//! array of strings, or one JSON string); and the STOMP byte stream cut
//! into messages.
//!
//! Strings are JSON-encoded with every character outside printable ASCII
//! written as `\uXXXX` (astral characters as surrogate pairs). The
//! protocol requires escaping the control characters and several Unicode
//! ranges that browsers or proxies mangle (U+200C–U+200F, U+2028–U+202F,
//! U+2060–U+206F, U+FFF0–U+FFFF among them); escaping all non-ASCII is a
//! superset, so no list can be out of date.

use std::fmt::Write as _;

/// The open frame.
pub const OPEN: &str = "o";
/// The heartbeat frame.
pub const HEARTBEAT: &str = "h";

/// `c[code,"reason"]`.
pub fn close(code: u16, reason: &str) -> String {
    let mut out = format!("c[{code},");
    quote(reason, &mut out);
    out.push(']');
    out
}

/// `a["m1","m2",…]`.
pub fn messages<'a>(msgs: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::from("a[");
    for (i, m) in msgs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        quote(m, &mut out);
    }
    out.push(']');
    out
}

/// Appends `s` as a JSON string, escaped as the module docs say.
pub fn quote(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// Why a client's payload was refused (the reference server's words).
#[derive(Debug, PartialEq, Eq)]
pub enum PayloadError {
    /// An empty body.
    Empty,
    /// Not a JSON array of strings nor a JSON string.
    Broken,
}

impl PayloadError {
    pub fn text(&self) -> &'static str {
        match self {
            PayloadError::Empty => "Payload expected.",
            PayloadError::Broken => "Broken JSON encoding.",
        }
    }
}

/// The messages in a client's payload: a JSON array of strings, or a
/// single JSON string.
pub fn parse_payload(body: &[u8]) -> Result<Vec<String>, PayloadError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(PayloadError::Empty);
    }
    if let Ok(v) = serde_json::from_slice::<Vec<String>>(body) {
        return Ok(v);
    }
    serde_json::from_slice::<String>(body).map(|s| vec![s]).map_err(|_| PayloadError::Broken)
}

/// Cuts the STOMP connection's output into SockJS messages (strings):
/// whole frames only (up to the last NUL), so clients that parse one
/// message at a time see whole frames; heart-beat newlines pass alone.
/// Bytes that are not UTF-8 become U+FFFD (SockJS carries text).
#[derive(Debug, Default)]
pub struct Cutter {
    pending: Vec<u8>,
}

impl Cutter {
    /// Takes `bytes`; returns the message ready, if any.
    pub fn push(&mut self, bytes: &[u8]) -> Option<String> {
        self.pending.extend_from_slice(bytes);
        let end = match self.pending.iter().rposition(|&b| b == 0) {
            Some(i) => i + 1,
            None if self.pending.iter().all(|&b| b == b'\n' || b == b'\r') => self.pending.len(),
            None => return None,
        };
        if end == 0 {
            return None;
        }
        let rest = self.pending.split_off(end);
        let whole = std::mem::replace(&mut self.pending, rest);
        Some(String::from_utf8_lossy(&whole).into_owned())
    }

    /// Bytes held for an unfinished frame.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_encode() {
        assert_eq!(close(3000, "Go away!"), r#"c[3000,"Go away!"]"#);
        assert_eq!(messages(["a", "b\"\\\n\0"]), r#"a["a","b\"\\\n\u0000"]"#);
        assert_eq!(messages(["\u{2028}é\u{1F600}\u{fff0}"]), r#"a["\u2028\u00e9\ud83d\ude00\ufff0"]"#);
        assert_eq!(messages([]), "a[]");
    }

    #[test]
    fn payloads_parse() {
        assert_eq!(parse_payload(br#"["a","b"]"#), Ok(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(parse_payload(br#""x""#), Ok(vec!["x".to_string()]));
        assert_eq!(parse_payload(b""), Err(PayloadError::Empty));
        assert_eq!(parse_payload(b"[\"x"), Err(PayloadError::Broken));
        assert_eq!(parse_payload(b"[1]"), Err(PayloadError::Broken));
    }

    #[test]
    fn cutter_gives_whole_frames() {
        let mut c = Cutter::default();
        assert_eq!(c.push(b"CONNECTED\n\n"), None);
        assert_eq!(c.push(b"\0MESS"), Some("CONNECTED\n\n\0".to_string()));
        assert_eq!(c.pending(), 4);
        assert_eq!(c.push(b"AGE\n\n\0\n"), Some("MESSAGE\n\n\0".to_string()));
        assert_eq!(c.push(b""), Some("\n".to_string()));
        assert_eq!(c.push(b"\n"), Some("\n".to_string()));
        assert_eq!(c.push(b"\xff\0"), Some("\u{fffd}\0".to_string()));
    }
}
