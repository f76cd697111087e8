//! Arbitrary bytes through `decode`, for every version state, with a small
//! packet size limit. Checks, for every packet that decodes:
//!
//! * `Ok(None)` and `Err` leave the buffer as it was; `Ok(Some)` consumes.
//! * Prefixes of the input either need more bytes or give the same result.
//! * The packet encodes, `encoded_len` is exact, the encoding decodes to an
//!   equal packet, and encoding that again gives the same bytes.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use portcullis_core::codec::{decode, encode, encoded_len, DecodeError, Packet, ProtocolVersion};

const VERSIONS: [Option<ProtocolVersion>; 4] =
    [None, Some(ProtocolVersion::V31), Some(ProtocolVersion::V311), Some(ProtocolVersion::V5)];
const MAX: u32 = 2048;

fuzz_target!(|data: &[u8]| {
    for start in VERSIONS {
        let mut buf = BytesMut::from(data);
        let mut version = start;
        loop {
            let before = buf.clone();
            let res = decode(&mut buf, version, MAX);
            check_prefixes(&before, version, &res);
            match res {
                Ok(Some(p)) => {
                    assert!(buf.len() < before.len(), "a packet consumes bytes");
                    assert_eq!(&before[before.len() - buf.len()..], &buf[..]);
                    let v = match &p {
                        Packet::Connect(c) => c.protocol,
                        _ => version.expect("only CONNECT decodes before CONNECT"),
                    };
                    round_trip(&p, v);
                    // As the connection does: the CONNECT fixes the version.
                    version.get_or_insert(v);
                }
                Ok(None) | Err(_) => {
                    assert_eq!(buf, before, "buffer untouched");
                    break;
                }
            }
        }
    }
});

/// Decoding a prefix must give `Ok(None)` or the same answer as the whole.
fn check_prefixes(
    whole: &BytesMut,
    version: Option<ProtocolVersion>,
    res: &Result<Option<Packet>, DecodeError>,
) {
    let consumed = match res {
        Ok(Some(_)) => {
            // Not worth cloning the packet: re-decode the whole to compare.
            let mut b = whole.clone();
            let again = decode(&mut b, version, MAX);
            assert_eq!(&again, res, "decode is deterministic");
            whole.len() - b.len()
        }
        _ => whole.len(),
    };
    let mut lens: Vec<usize> = (1..=6).collect();
    lens.push(consumed.saturating_sub(1));
    for n in lens {
        if n == 0 || n >= whole.len() {
            continue;
        }
        let mut b = BytesMut::from(&whole[..n]);
        let got = decode(&mut b, version, MAX);
        match (&got, res) {
            (Ok(None), _) => assert_eq!(&b[..], &whole[..n]),
            // A prefix shorter than a complete packet cannot decode.
            (_, Ok(Some(_))) if n < consumed => panic!("prefix {n} of a {consumed}-byte packet gave {got:?}"),
            _ => assert_eq!(&got, res, "prefix {n}"),
        }
    }
}

fn round_trip(p: &Packet, v: ProtocolVersion) {
    let mut out = BytesMut::new();
    encode(p, v, &mut out).expect("a decoded packet encodes");
    assert_eq!(out.len(), encoded_len(p, v), "encoded_len is exact");
    let bytes = out.clone();
    let dv = if matches!(p, Packet::Connect(_)) { None } else { Some(v) };
    let again = decode(&mut out, dv, u32::MAX).expect("re-encoding decodes").expect("complete packet");
    assert!(out.is_empty(), "exactly one packet");
    assert_eq!(&again, p, "round trip");
    let mut out2 = BytesMut::new();
    encode(&again, v, &mut out2).expect("encodes again");
    assert_eq!(out2, bytes, "encoding is canonical");
}
