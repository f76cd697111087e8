//! STOMP frames ⇄ bytes, sans IO.
//!
//! [`Decoder::decode`] takes whole frames off the front of a buffer,
//! incrementally: it scans only bytes that arrived, and never reserves what
//! a frame declares (a `content-length` is checked against the body limit
//! first; the buffer grows only with the bytes that come). Header
//! escapes are those of the negotiated version (none in 1.0 and in the
//! CONNECT frame; `\r` only in 1.2); an undefined escape is an error.
//! Repeated headers: the first wins. Lines end in LF, or CRLF. Bare EOLs
//! between frames are heart-beats.
//!
//! [`Frame::encode`] writes a frame with `content-length` whenever it has a
//! body, so a body with NUL bytes passes unchanged.

use bytes::{Buf, Bytes, BytesMut};

/// A STOMP protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V10,
    V11,
    V12,
}

impl Version {
    /// Every version served, lowest first.
    pub const ALL: [Version; 3] = [Version::V10, Version::V11, Version::V12];

    pub fn as_str(self) -> &'static str {
        match self {
            Version::V10 => "1.0",
            Version::V11 => "1.1",
            Version::V12 => "1.2",
        }
    }

    pub fn parse(s: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.as_str() == s.trim())
    }
}

impl From<Version> for portcullis_core::gate::StompVersion {
    fn from(v: Version) -> Self {
        match v {
            Version::V10 => Self::V10,
            Version::V11 => Self::V11,
            Version::V12 => Self::V12,
        }
    }
}

/// A decoded or to-be-encoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub command: String,
    /// In order; a repeated name is kept but [`Frame::header`] sees the first.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: &str) -> Frame {
        Frame { command: command.to_string(), headers: Vec::new(), body: Bytes::new() }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Frame {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// The first value of `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Appends the frame to `out`, headers escaped for `version` (the
    /// CONNECTED frame never is).
    pub fn encode(&self, version: Version, out: &mut BytesMut) {
        let escape = version != Version::V10 && self.command != "CONNECTED";
        out.extend_from_slice(self.command.as_bytes());
        out.extend_from_slice(b"\n");
        for (n, v) in &self.headers {
            put_escaped(out, n, escape, version);
            out.extend_from_slice(b":");
            put_escaped(out, v, escape, version);
            out.extend_from_slice(b"\n");
        }
        if !self.body.is_empty() && self.header("content-length").is_none() {
            out.extend_from_slice(format!("content-length:{}\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\n");
        out.extend_from_slice(&self.body);
        out.extend_from_slice(b"\0");
    }
}

fn put_escaped(out: &mut BytesMut, s: &str, escape: bool, version: Version) {
    if !escape {
        // 1.0 cannot carry these; a header line must stay one line.
        for c in s.chars() {
            let c = if matches!(c, '\n' | '\r') { ' ' } else { c };
            let mut b = [0u8; 4];
            out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
        }
        return;
    }
    for c in s.chars() {
        match c {
            '\\' => out.extend_from_slice(b"\\\\"),
            '\n' => out.extend_from_slice(b"\\n"),
            ':' => out.extend_from_slice(b"\\c"),
            '\r' if version == Version::V12 => out.extend_from_slice(b"\\r"),
            '\r' => out.extend_from_slice(b" "),
            c => {
                let mut b = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut b).as_bytes());
            }
        }
    }
}

/// What a frame may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes of the command line and headers together (up to the blank line).
    pub max_header_bytes: usize,
    /// Header lines.
    pub max_headers: usize,
    /// Body bytes.
    pub max_body: usize,
}

/// Why a frame was refused; the text goes into the ERROR frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    HeadersTooLarge,
    TooManyHeaders,
    BodyTooLarge,
    /// Not UTF-8, no colon in a header line, an empty command.
    Malformed(&'static str),
    /// An escape the version does not define.
    BadEscape,
    BadContentLength,
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::HeadersTooLarge => f.write_str("frame headers too large"),
            FrameError::TooManyHeaders => f.write_str("too many headers"),
            FrameError::BodyTooLarge => f.write_str("frame body too large"),
            FrameError::Malformed(what) => write!(f, "malformed frame: {what}"),
            FrameError::BadEscape => f.write_str("undefined escape sequence in a header"),
            FrameError::BadContentLength => f.write_str("invalid content-length header"),
        }
    }
}

/// An incremental decoder (see the module docs).
#[derive(Debug)]
pub struct Decoder {
    pub limits: Limits,
    /// Escapes as this version defines them; `None` until negotiated (the
    /// CONNECT frame has none).
    pub version: Option<Version>,
    /// Bytes of the buffer already searched for the end of the headers,
    /// or of the body, so that a frame arriving byte by byte is scanned once.
    scanned: usize,
    /// Once the headers are parsed: their length and the frame so far.
    pending: Option<(usize, Frame, Option<usize>)>,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder { limits, version: None, scanned: 0, pending: None }
    }

    /// A decoder for frames after CONNECT, escapes as `version` defines.
    pub fn for_version(limits: Limits, version: Version) -> Decoder {
        Decoder { version: Some(version), ..Decoder::new(limits) }
    }

    /// Takes heart-beats (returns `Heartbeat`) and whole frames off `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, FrameError> {
        if self.pending.is_none() {
            // Heart-beats: EOLs before a frame.
            let mut eols = 0;
            while eols < buf.len() {
                match buf[eols] {
                    b'\n' => eols += 1,
                    b'\r' if buf.get(eols + 1) == Some(&b'\n') => eols += 2,
                    _ => break,
                }
            }
            if buf.get(eols) == Some(&b'\r') && eols + 1 == buf.len() {
                // A CR whose LF has not come yet.
                buf.advance(eols);
                self.scanned = 0;
                return Ok(if eols > 0 { Some(Decoded::Heartbeat) } else { None });
            }
            if eols > 0 {
                buf.advance(eols);
                self.scanned = 0;
                return Ok(Some(Decoded::Heartbeat));
            }
            let Some(end) = self.find_header_end(buf)? else { return Ok(None) };
            let (frame, body_len) = self.parse_headers(&buf[..end.0])?;
            self.pending = Some((end.1, frame, body_len));
            self.scanned = 0;
        }
        let Some((start, _, body_len)) = &self.pending else { return Ok(None) };
        let start = *start;
        let body_end = match *body_len {
            Some(n) => {
                if buf.len() < start + n + 1 {
                    return Ok(None);
                }
                if buf[start + n] != 0 {
                    return Err(FrameError::Malformed("no NUL after content-length bytes"));
                }
                start + n
            }
            None => {
                let from = start + self.scanned;
                match buf[from..].iter().position(|&b| b == 0) {
                    Some(i) => from + i,
                    None => {
                        self.scanned = buf.len() - start;
                        if self.scanned > self.limits.max_body {
                            return Err(FrameError::BodyTooLarge);
                        }
                        return Ok(None);
                    }
                }
            }
        };
        if body_end - start > self.limits.max_body {
            return Err(FrameError::BodyTooLarge);
        }
        let Some((_, mut frame, _)) = self.pending.take() else { return Ok(None) };
        self.scanned = 0;
        let mut whole = buf.split_to(body_end + 1);
        whole.advance(start);
        whole.truncate(body_end - start);
        frame.body = whole.freeze();
        Ok(Some(Decoded::Frame(frame)))
    }

    /// The end of the headers: (where the header text ends, where the body
    /// starts).
    fn find_header_end(&mut self, buf: &[u8]) -> Result<Option<(usize, usize)>, FrameError> {
        let from = self.scanned.saturating_sub(3);
        let limit = buf.len().min(self.limits.max_header_bytes + 4);
        let mut i = from;
        while i < limit {
            if buf[i] == b'\n' {
                // An empty line: "\n\n" or "\n\r\n".
                if buf.get(i + 1) == Some(&b'\n') {
                    return Ok(Some((i, i + 2)));
                }
                if buf.get(i + 1) == Some(&b'\r') && buf.get(i + 2) == Some(&b'\n') {
                    return Ok(Some((i, i + 3)));
                }
            }
            i += 1;
        }
        self.scanned = limit;
        if buf.len() > self.limits.max_header_bytes + 3 {
            return Err(FrameError::HeadersTooLarge);
        }
        Ok(None)
    }

    fn parse_headers(&self, text: &[u8]) -> Result<(Frame, Option<usize>), FrameError> {
        if text.len() > self.limits.max_header_bytes {
            return Err(FrameError::HeadersTooLarge);
        }
        let text = std::str::from_utf8(text).map_err(|_| FrameError::Malformed("not UTF-8"))?;
        let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let command = lines.next().unwrap_or_default();
        if command.is_empty() || !command.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(FrameError::Malformed("bad command"));
        }
        // CONNECT / STOMP frames are never escaped.
        let escapes = match self.version {
            Some(v) if command != "CONNECT" && command != "STOMP" => Some(v),
            _ => None,
        };
        let mut frame = Frame::new(command);
        for line in lines {
            if frame.headers.len() == self.limits.max_headers {
                return Err(FrameError::TooManyHeaders);
            }
            let Some((n, v)) = line.split_once(':') else {
                return Err(FrameError::Malformed("header line without a colon"));
            };
            let (n, v) = match escapes {
                Some(version) if version != Version::V10 => (unescape(n, version)?, unescape(v, version)?),
                _ => (n.to_string(), v.to_string()),
            };
            frame.headers.push((n, v));
        }
        let body_len = match frame.header("content-length") {
            None => None,
            Some(s) => {
                let n: usize = s.trim().parse().map_err(|_| FrameError::BadContentLength)?;
                if n > self.limits.max_body {
                    return Err(FrameError::BodyTooLarge);
                }
                Some(n)
            }
        };
        Ok((frame, body_len))
    }
}

/// What [`Decoder::decode`] took off the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    Heartbeat,
    Frame(Frame),
}

fn unescape(s: &str, version: Version) -> Result<String, FrameError> {
    if !s.contains('\\') {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('c') => out.push(':'),
            Some('\\') => out.push('\\'),
            Some('r') if version == Version::V12 => out.push('\r'),
            _ => return Err(FrameError::BadEscape),
        }
    }
    Ok(out)
}
