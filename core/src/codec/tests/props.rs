//! Property blocks on their own: allow-lists, duplicates, values.

use bytes::BytesMut;

use super::super::properties::{self as props, id};
use super::super::wire::Reader;
use super::*;
use DecodeError as E;

const CTXS: [PropCtx; 11] = [
    PropCtx::Connect,
    PropCtx::Will,
    PropCtx::ConnAck,
    PropCtx::Publish,
    PropCtx::PubResp,
    PropCtx::Subscribe,
    PropCtx::SubAck,
    PropCtx::Unsubscribe,
    PropCtx::UnsubAck,
    PropCtx::Disconnect,
    PropCtx::Auth,
];

/// Decodes a property block given without its length prefix.
fn block(ctx: PropCtx, content: &[u8]) -> Result<Properties, DecodeError> {
    let mut bytes = frame(0, content);
    bytes.remove(0);
    let mut r = Reader::new(Bytes::from(bytes));
    let p = props::decode(&mut r, ctx)?;
    r.finish()?;
    Ok(p)
}

#[test]
fn every_context_round_trips_its_full_set() {
    for ctx in CTXS {
        let p = props_for(ctx);
        let mut buf = BytesMut::new();
        props::encode(&p, ctx, &mut buf).unwrap();
        assert_eq!(props::encoded_len(&p, ctx), buf.len(), "{ctx:?}");
        let mut r = Reader::new(buf.freeze());
        assert_eq!(props::decode(&mut r, ctx), Ok(p), "{ctx:?}");
        assert!(r.is_empty());
    }
}

#[test]
fn disallowed_properties_are_not_encoded() {
    let p = props_for(PropCtx::ConnAck);
    let mut buf = BytesMut::new();
    props::encode(&p, PropCtx::Unsubscribe, &mut buf).unwrap();
    let mut r = Reader::new(buf.freeze());
    let got = props::decode(&mut r, PropCtx::Unsubscribe).unwrap();
    assert_eq!(got, Properties { user_properties: p.user_properties, ..Properties::default() });
}

#[test]
fn allow_lists() {
    // Every context rejects what it does not allow, with the identifier.
    let samples: &[(u8, &[u8])] = &[
        (id::PAYLOAD_FORMAT_INDICATOR, &[0]),
        (id::SESSION_EXPIRY_INTERVAL, &[0, 0, 0, 1]),
        (id::TOPIC_ALIAS, &[0, 1]),
        (id::REASON_STRING, &[0, 0]),
        (id::AUTHENTICATION_METHOD, &[0, 1, b'm']),
        (id::WILL_DELAY_INTERVAL, &[0, 0, 0, 1]),
        (id::MAXIMUM_QOS, &[0]),
        (id::SUBSCRIPTION_IDENTIFIER, &[1]),
    ];
    for ctx in CTXS {
        for &(pid, value) in samples {
            let content = [&[pid][..], value].concat();
            let res = block(ctx, &content);
            if ctx.allows(pid) {
                assert!(res.is_ok(), "{ctx:?} {pid:#x}: {res:?}");
            } else {
                assert_eq!(res, Err(E::PropertyNotAllowed(pid)), "{ctx:?}");
            }
        }
    }
    assert!(!PropCtx::Publish.allows(id::SESSION_EXPIRY_INTERVAL));
    assert!(PropCtx::Will.allows(id::WILL_DELAY_INTERVAL));
    assert!(!PropCtx::Connect.allows(id::WILL_DELAY_INTERVAL));
    assert!(!PropCtx::Connect.allows(200));
}

#[test]
fn unknown_identifiers() {
    for pid in [0x00, 0x04, 0x05, 0x0A, 0x14, 0x2B, 0x7F] {
        assert_eq!(block(PropCtx::Connect, &[pid, 0]), Err(E::UnknownProperty(pid)));
    }
    // A multi-byte identifier is a varint; 0x80 0x01 = 128.
    assert_eq!(block(PropCtx::Connect, &[0x80, 0x01, 0]), Err(E::UnknownProperty(128)));
    // Identifier 1 in non-minimal form is still identifier 1.
    assert!(block(PropCtx::Publish, &[0x81, 0x00, 1]).is_ok());
}

#[test]
fn duplicates() {
    let twice = |pid: u8, value: &[u8]| [&[pid][..], value, &[pid][..], value].concat();
    assert_eq!(
        block(PropCtx::Connect, &twice(id::SESSION_EXPIRY_INTERVAL, &[0, 0, 0, 1])),
        Err(E::DuplicateProperty(id::SESSION_EXPIRY_INTERVAL))
    );
    assert_eq!(
        block(PropCtx::PubResp, &twice(id::REASON_STRING, &[0, 1, b'x'])),
        Err(E::DuplicateProperty(id::REASON_STRING))
    );
    assert_eq!(block(PropCtx::Publish, &twice(id::TOPIC_ALIAS, &[0, 1])), Err(E::DuplicateProperty(id::TOPIC_ALIAS)));
    assert_eq!(
        block(PropCtx::Subscribe, &twice(id::SUBSCRIPTION_IDENTIFIER, &[1])),
        Err(E::DuplicateProperty(id::SUBSCRIPTION_IDENTIFIER))
    );
    // Separated by another property: still a duplicate.
    assert_eq!(block(PropCtx::ConnAck, &[0x24, 0, 0x25, 1, 0x24, 1]), Err(E::DuplicateProperty(0x24)));
    // User properties repeat, in order, even with the same key.
    let up = [0x26, 0, 1, b'k', 0, 1, b'a', 0x26, 0, 1, b'k', 0, 1, b'b'];
    let p = block(PropCtx::Disconnect, &up).unwrap();
    assert_eq!(p.user_properties, vec![("k".into(), "a".into()), ("k".into(), "b".into())]);
    // Subscription identifiers repeat on PUBLISH (server to client).
    let p = block(PropCtx::Publish, &twice(id::SUBSCRIPTION_IDENTIFIER, &[0x80, 0x01])).unwrap();
    assert_eq!(p.subscription_identifiers, vec![128, 128]);
}

#[test]
fn values() {
    let bad: &[(PropCtx, &[u8])] = &[
        (PropCtx::Publish, &[0x01, 2]),
        (PropCtx::Connect, &[0x17, 2]),
        (PropCtx::Connect, &[0x19, 2]),
        (PropCtx::Connect, &[0x21, 0, 0]),
        (PropCtx::Connect, &[0x27, 0, 0, 0, 0]),
        (PropCtx::ConnAck, &[0x24, 2]),
        (PropCtx::ConnAck, &[0x25, 2]),
        (PropCtx::ConnAck, &[0x28, 2]),
        (PropCtx::ConnAck, &[0x29, 2]),
        (PropCtx::ConnAck, &[0x2A, 2]),
        (PropCtx::Publish, &[0x23, 0, 0]),
        (PropCtx::Subscribe, &[0x0B, 0]),
        (PropCtx::Will, &[0x08, 0, 3, b'a', b'/', b'+']),
        (PropCtx::Will, &[0x08, 0, 0]),
    ];
    for &(ctx, content) in bad {
        assert_eq!(block(ctx, content), Err(E::InvalidPropertyValue(content[0])), "{content:02x?}");
        let want =
            if content[0] == id::TOPIC_ALIAS { reason::v5::TOPIC_ALIAS_INVALID } else { reason::v5::PROTOCOL_ERROR };
        assert_eq!(E::InvalidPropertyValue(content[0]).v5_reason(), want);
    }
    // Edge values that are fine.
    assert!(block(PropCtx::ConnAck, &[0x22, 0, 0]).is_ok());
    assert!(block(PropCtx::Subscribe, &[0x0B, 0xFF, 0xFF, 0xFF, 0x7F]).is_ok());
    // A subscription identifier longer than four bytes.
    assert!(matches!(block(PropCtx::Subscribe, &[0x0B, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]), Err(E::Malformed(_))));
    // Strings inside properties follow the string rules.
    assert_eq!(block(PropCtx::Disconnect, &[0x1F, 0, 1, 0]), Err(E::NullCharInString));
    assert_eq!(block(PropCtx::Disconnect, &[0x1F, 0, 1, 0xFF]), Err(E::InvalidUtf8));
    assert_eq!(block(PropCtx::Disconnect, &[0x26, 0, 1, b'k']), Err(E::Truncated));
}

#[test]
fn property_length_must_match() {
    // Declared length longer than the packet.
    let mut r = Reader::new(Bytes::from_static(&[5, 0x01, 0]));
    assert_eq!(props::decode(&mut r, PropCtx::Publish), Err(E::Truncated));
    // Declared length cuts a property in half.
    let mut r = Reader::new(Bytes::from_static(&[2, 0x02, 0, 0, 0]));
    assert_eq!(props::decode(&mut r, PropCtx::Publish), Err(E::Truncated));
    // Declared length shorter than the properties: the rest is left over.
    let mut r = Reader::new(Bytes::from_static(&[2, 0x01, 0, 0x01, 1]));
    assert!(props::decode(&mut r, PropCtx::Publish).is_ok());
    assert!(!r.is_empty());
}
