//! Frame codec tests: escapes, repeated headers, CRLF, content-length
//! bodies with NUL, limits, and random input that must never panic.

use bytes::BytesMut;
use rand::{Rng, SeedableRng};

use crate::frame::{Decoded, Decoder, Frame, FrameError, Limits, Version};

fn limits() -> Limits {
    Limits { max_header_bytes: 1024, max_headers: 8, max_body: 4096 }
}

fn decoder(v: Version) -> Decoder {
    Decoder::for_version(limits(), v)
}

fn one(v: Version, bytes: &[u8]) -> Result<Option<Frame>, FrameError> {
    let mut d = decoder(v);
    let mut buf = BytesMut::from(bytes);
    loop {
        match d.decode(&mut buf)? {
            Some(Decoded::Heartbeat) => continue,
            Some(Decoded::Frame(f)) => return Ok(Some(f)),
            None => return Ok(None),
        }
    }
}

#[test]
fn escapes_per_version() {
    let f = one(Version::V12, b"SEND\ndestination:a\\cb\\\\c\\nd\\re\n\nx\0").unwrap().unwrap();
    assert_eq!(f.header("destination"), Some("a:b\\c\nd\re"));
    assert_eq!(one(Version::V12, b"SEND\nd:\\t\n\n\0"), Err(FrameError::BadEscape));
    // 1.1 has no \r.
    assert_eq!(one(Version::V11, b"SEND\nd:\\r\n\n\0"), Err(FrameError::BadEscape));
    // 1.0 has no escapes at all.
    let f = one(Version::V10, b"SEND\nd:\\t\n\n\0").unwrap().unwrap();
    assert_eq!(f.header("d"), Some("\\t"));
    // CONNECT is never unescaped.
    let f = one(Version::V12, b"CONNECT\nlogin:a\\tb\n\n\0").unwrap().unwrap();
    assert_eq!(f.header("login"), Some("a\\tb"));
}

#[test]
fn first_header_wins_and_crlf_works() {
    let f = one(Version::V12, b"SEND\r\ndestination:first\r\ndestination:second\r\n\r\nbody\0\r\n").unwrap().unwrap();
    assert_eq!(f.header("destination"), Some("first"));
    assert_eq!(&f.body[..], b"body");
}

#[test]
fn content_length_bodies_keep_nul() {
    let f = one(Version::V12, b"SEND\ndestination:a\ncontent-length:5\n\na\0b\0c\0").unwrap().unwrap();
    assert_eq!(&f.body[..], b"a\0b\0c");
    assert!(one(Version::V12, b"SEND\ncontent-length:5\n\na\0b\0cX").is_err(), "no NUL after the body");
    assert_eq!(one(Version::V12, b"SEND\ncontent-length:x\n\n\0"), Err(FrameError::BadContentLength));
}

#[test]
fn declared_sizes_over_the_limit_are_refused_before_the_bytes() {
    // A huge declared length is refused from the header alone.
    assert_eq!(one(Version::V12, b"SEND\ncontent-length:99999999999\n\n"), Err(FrameError::BodyTooLarge));
    let mut headers = b"SEND\n".to_vec();
    headers.extend(std::iter::repeat_n(b'a', 2000));
    assert_eq!(one(Version::V12, &headers), Err(FrameError::HeadersTooLarge));
    let many: String = (0..9).map(|i| format!("h{i}:v\n")).collect();
    assert_eq!(one(Version::V12, format!("SEND\n{many}\n\0").as_bytes()), Err(FrameError::TooManyHeaders));
    let mut body = b"SEND\n\n".to_vec();
    body.extend(std::iter::repeat_n(b'b', 5000));
    assert_eq!(one(Version::V12, &body), Err(FrameError::BodyTooLarge));
}

#[test]
fn frames_split_anywhere_decode_the_same() {
    let bytes = b"\n\nSEND\r\ndestination:a/b\ncontent-length:3\n\n\0\0\0\0\nMESSAGE\nx:y\n\nhello\0";
    for cut in 0..bytes.len() {
        let mut d = decoder(Version::V12);
        let mut buf = BytesMut::from(&bytes[..cut]);
        let mut frames = Vec::new();
        let drain = |d: &mut Decoder, buf: &mut BytesMut, frames: &mut Vec<Frame>| {
            while let Some(x) = d.decode(buf).unwrap() {
                if let Decoded::Frame(f) = x {
                    frames.push(f);
                }
            }
        };
        drain(&mut d, &mut buf, &mut frames);
        buf.extend_from_slice(&bytes[cut..]);
        drain(&mut d, &mut buf, &mut frames);
        assert_eq!(frames.len(), 2, "cut at {cut}");
        assert_eq!(&frames[0].body[..], b"\0\0\0");
        assert_eq!(&frames[1].body[..], b"hello");
    }
}

#[test]
fn encode_then_decode_round_trips() {
    for v in Version::ALL {
        let mut f = Frame::new("MESSAGE").with("destination", "a/b").with("k", "x:y\\z\nw");
        f.body = bytes::Bytes::from_static(b"1\x002");
        let mut out = BytesMut::new();
        f.encode(v, &mut out);
        let g = one(v, &out).unwrap().unwrap();
        assert_eq!(&g.body[..], b"1\x002");
        if v != Version::V10 {
            assert_eq!(g.header("k"), Some("x:y\\z\nw"));
        }
    }
}

/// Random bytes, random splits, every version: an error or frames, never a
/// panic, and the buffer never holds more than the limits allow.
#[test]
fn random_input_never_panics() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(17);
    let alphabet = b"SENDCONECT:\\ncr\r\n\0-lengthcontent0123456789 ";
    for _ in 0..20_000 {
        let len = rng.gen_range(0..300);
        let bytes: Vec<u8> = (0..len)
            .map(|_| if rng.gen_bool(0.7) { alphabet[rng.gen_range(0..alphabet.len())] } else { rng.gen() })
            .collect();
        for v in [None, Some(Version::V10), Some(Version::V11), Some(Version::V12)] {
            let mut d = match v {
                Some(v) => Decoder::for_version(limits(), v),
                None => Decoder::new(limits()),
            };
            let mut buf = BytesMut::new();
            for chunk in bytes.chunks(rng.gen_range(1..40)) {
                buf.extend_from_slice(chunk);
                let mut n = 0;
                loop {
                    n += 1;
                    assert!(n < 1000);
                    match d.decode(&mut buf) {
                        Ok(Some(_)) => continue,
                        Ok(None) | Err(_) => break,
                    }
                }
            }
        }
    }
}

mod headers {
    use portcullis_core::codec::Properties;

    use crate::frame::{Frame, Version};
    use crate::headers::{add_properties, to_properties, Refused};

    #[test]
    fn send_headers_map_first_wins_and_bounded() {
        let f = Frame::new("SEND")
            .with("destination", "a")
            .with("x", "1")
            .with("receipt", "r")
            .with("y", "2")
            .with("x", "again")
            .with("content-type", "text/plain")
            .with("reply-to", "back");
        let p = to_properties(&f, "m/", 2, 100).unwrap();
        assert_eq!(p.user_properties, vec![("x".into(), "1".into()), ("y".into(), "2".into())]);
        assert_eq!(p.content_type.as_deref(), Some("text/plain"));
        assert_eq!(p.response_topic.as_deref(), Some("m/back"));
        assert_eq!(to_properties(&f, "", 1, 100), Err(Refused::TooMany));
        assert_eq!(to_properties(&f, "", 2, 3), Err(Refused::TooLarge));
        let f = Frame::new("SEND").with("reply-to", "a/+");
        assert_eq!(to_properties(&f, "", 2, 100), Err(Refused::BadReplyTo));
        let f = Frame::new("SEND").with("n", "a\0b");
        assert_eq!(to_properties(&f, "", 2, 100), Err(Refused::Nul));
    }

    #[test]
    fn user_properties_never_override_broker_headers() {
        let p = Properties {
            content_type: Some("ct".into()),
            user_properties: vec![
                ("destination".into(), "evil".into()),
                ("content-length".into(), "9".into()),
                ("content-type".into(), "evil".into()),
                ("a:b".into(), "v".into()),
                ("k".into(), "1".into()),
                ("k".into(), "2".into()),
            ],
            ..Properties::default()
        };
        let base = Frame::new("MESSAGE").with("destination", "t").with("message-id", "1");
        let mut f = base.clone();
        add_properties(&mut f, &p, "", Version::V12);
        let names: Vec<&str> = f.headers.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["destination", "message-id", "content-type", "a:b", "k", "k"]);
        assert_eq!(f.header("content-type"), Some("ct"));
        let mut f = base;
        add_properties(&mut f, &p, "", Version::V10);
        assert!(f.header("a:b").is_none());
    }
}
