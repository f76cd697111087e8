//! Peer-supplied strings in log lines: escaped and truncated.
//!
//! A client id, username or topic is whatever the peer sent. Written raw
//! into a log line, a newline forges a second line (`…\nauthenticated
//! client_id=admin superuser=true`), a space forges a field, and a 60 KB
//! username writes 60 KB per line. [`Peer`] writes such a string the way a
//! logfmt parser reads one value: plain when it is made of harmless
//! characters, otherwise in double quotes with `\n`, `\r`, `\t`, `\"`, `\\`
//! and `\u{..}` escapes; longer than [`MAX_LOGGED`] bytes, it is cut and
//! the rest counted (`…(+59904 bytes)`).

use std::fmt::{self, Write};

/// The most bytes of one peer-supplied string written to a log line.
pub const MAX_LOGGED: usize = 128;

/// Displays a peer-supplied string safely for a log line (see the module
/// docs). `Peer(&s)` costs nothing until it is formatted.
#[derive(Clone, Copy)]
pub struct Peer<'a>(pub &'a str);

impl fmt::Display for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0;
        let mut cut = s.len().min(MAX_LOGGED);
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        let head = &s[..cut];
        let plain = !head.is_empty()
            && head
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | '/' | ':' | '@' | '+' | '#' | '$'));
        if plain {
            f.write_str(head)?;
        } else {
            f.write_char('"')?;
            for c in head.chars() {
                match c {
                    '"' => f.write_str("\\\"")?,
                    '\\' => f.write_str("\\\\")?,
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    '\t' => f.write_str("\\t")?,
                    c if c.is_control() || is_invisible(c) => write!(f, "\\u{{{:x}}}", c as u32)?,
                    c => f.write_char(c)?,
                }
            }
            f.write_char('"')?;
        }
        if cut < s.len() {
            write!(f, "…(+{} bytes)", s.len() - cut)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Peer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Characters that render as nothing or move the cursor: bidi controls,
/// zero-width ones, line and paragraph separators.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
}

/// An optional peer string: `-` when absent.
#[derive(Clone, Copy)]
pub struct PeerOpt<'a>(pub Option<&'a str>);

impl fmt::Display for PeerOpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => Peer(s).fmt(f),
            None => f.write_str("-"),
        }
    }
}

impl fmt::Debug for PeerOpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Paces a kind of log line a peer can trigger at will (a refused
/// CONNECT): at most `per_sec` lines a second; the lines not written are
/// counted and reported with the next one written.
#[derive(Debug)]
pub struct LogLimiter {
    per_sec: u32,
    /// (start of the current second, lines written in it, lines dropped
    /// since the last one written).
    state: parking_lot::Mutex<(Option<std::time::Instant>, u32, u64)>,
}

impl LogLimiter {
    pub fn new(per_sec: u32) -> LogLimiter {
        LogLimiter { per_sec, state: parking_lot::Mutex::new((None, 0, 0)) }
    }

    /// `Some(suppressed)` when a line may be written now (`suppressed`:
    /// lines dropped since the last one); `None` when it is to be dropped.
    pub fn allow(&self) -> Option<u64> {
        let now = std::time::Instant::now();
        let mut st = self.state.lock();
        let (start, written, dropped) = &mut *st;
        if start.is_none_or(|s| now.duration_since(s) >= std::time::Duration::from_secs(1)) {
            *start = Some(now);
            *written = 0;
        }
        if *written >= self.per_sec {
            *dropped += 1;
            return None;
        }
        *written += 1;
        Some(std::mem::take(dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_values_stay_plain() {
        assert_eq!(Peer("sensor-42").to_string(), "sensor-42");
        assert_eq!(Peer("devices/+/temp").to_string(), "devices/+/temp");
        assert_eq!(Peer("alice@example.com").to_string(), "alice@example.com");
    }

    #[test]
    fn forged_lines_and_fields_are_quoted_and_escaped() {
        let s = Peer("x\nINFO authenticated client_id=admin superuser=true").to_string();
        assert_eq!(s, "\"x\\nINFO authenticated client_id=admin superuser=true\"");
        assert!(!s.contains('\n'));
        assert_eq!(Peer("a\"b\\c\r\t\u{1b}[31m").to_string(), "\"a\\\"b\\\\c\\r\\t\\u{1b}[31m\"");
        assert_eq!(Peer("").to_string(), "\"\"");
        assert_eq!(Peer("a\u{202e}b").to_string(), "\"a\\u{202e}b\"");
    }

    #[test]
    fn long_values_are_cut_and_counted() {
        let long = "u".repeat(60_000);
        let s = Peer(&long).to_string();
        assert!(s.len() < MAX_LOGGED + 32, "{}", s.len());
        assert!(s.ends_with("…(+59872 bytes)"), "{s}");
        // Cut on a character boundary.
        let wide = "é".repeat(100);
        let s = Peer(&wide).to_string();
        assert!(s.contains("…(+"), "{s}");
    }

    #[test]
    fn limiter_drops_and_counts() {
        let l = LogLimiter::new(3);
        assert_eq!((0..3).map(|_| l.allow()).collect::<Vec<_>>(), vec![Some(0); 3]);
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        l.state.lock().0 = Some(std::time::Instant::now() - std::time::Duration::from_secs(2));
        assert_eq!(l.allow(), Some(2), "the next line reports what was dropped");
    }

    #[test]
    fn optional() {
        assert_eq!(PeerOpt(None).to_string(), "-");
        assert_eq!(PeerOpt(Some("a b")).to_string(), "\"a b\"");
    }
}
