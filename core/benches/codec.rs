//! Codec micro-benchmarks: decode and encode of the packets on the hot
//! paths (CONNECT, PUBLISH of 64 B and 4 KiB, SUBSCRIBE), in MQTT 3.1.1
//! and 5.0.
//!
//! * `decode/<packet>/<version>` — bytes → [`Packet`] as the broker reads
//!   them: the whole packet is buffered, the size limit is the default
//!   1 MiB. Each iteration decodes from a fresh copy of the bytes (the copy
//!   is made outside the timed part).
//! * `encode/<packet>/<version>` — [`Packet`] → bytes into a reused buffer,
//!   as a connection's write buffer is.
//!
//! Throughput is reported in bytes of the encoded packet. Run quickly with
//! `cargo bench -p portcullis-core --bench codec -- --quick`.

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use portcullis_core::codec::{
    decode, encode, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe, SubscriptionOptions,
};

/// The broker's default `limits.max_packet_size`.
const MAX_PACKET: u32 = 1024 * 1024;

fn connect(v: ProtocolVersion) -> Packet {
    let mut properties = Properties::default();
    if v.is_v5() {
        properties.session_expiry_interval = Some(3600);
        properties.receive_maximum = Some(64);
        properties.topic_alias_maximum = Some(16);
    }
    Packet::Connect(Box::new(Connect {
        protocol: v,
        bridge: false,
        clean_start: true,
        keep_alive: 60,
        client_id: "sensor-0042-kitchen".to_string(),
        will: None,
        username: Some("device-0042".to_string()),
        password: Some(Bytes::from_static(b"correct horse battery staple")),
        properties,
    }))
}

fn publish(v: ProtocolVersion, size: usize) -> Packet {
    let mut properties = Properties::default();
    if v.is_v5() {
        properties.payload_format_indicator = Some(0);
        properties.message_expiry_interval = Some(300);
    }
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "site/17/building/3/floor/2/room/12/temperature".to_string(),
        packet_id: Some(4242),
        payload: Bytes::from(vec![0x5a; size]),
        properties,
    })
}

fn subscribe(v: ProtocolVersion) -> Packet {
    let options = SubscriptionOptions { qos: QoS::AtLeastOnce, ..SubscriptionOptions::default() };
    let mut properties = Properties::default();
    if v.is_v5() {
        properties.subscription_identifiers = vec![7];
    }
    Packet::Subscribe(Subscribe {
        packet_id: 17,
        filters: vec![
            ("site/17/building/3/+/temperature".to_string(), options),
            ("site/17/alarms/#".to_string(), options),
            ("cmd/sensor-0042-kitchen".to_string(), options),
        ],
        properties,
    })
}

fn cases() -> Vec<(&'static str, ProtocolVersion, Packet)> {
    let mut out = Vec::new();
    for v in [ProtocolVersion::V311, ProtocolVersion::V5] {
        out.push(("connect", v, connect(v)));
        out.push(("publish_64B", v, publish(v, 64)));
        out.push(("publish_4KiB", v, publish(v, 4096)));
        out.push(("subscribe", v, subscribe(v)));
    }
    out
}

fn version_name(v: ProtocolVersion) -> &'static str {
    if v.is_v5() {
        "5.0"
    } else {
        "3.1.1"
    }
}

fn encoded(p: &Packet, v: ProtocolVersion) -> Bytes {
    let mut buf = BytesMut::new();
    encode(p, v, &mut buf).expect("benchmark packets encode");
    buf.freeze()
}

fn bench_decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for (name, v, packet) in cases() {
        let bytes = encoded(&packet, v);
        // A connection knows its version once CONNECT is decoded.
        let known = if matches!(packet, Packet::Connect(_)) { None } else { Some(v) };
        let decoded = decode(&mut BytesMut::from(&bytes[..]), known, MAX_PACKET).expect("decodes");
        assert_eq!(decoded.as_ref(), Some(&packet), "{name} {v:?} round-trips");
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function(format!("{name}/{}", version_name(v)), |b| {
            b.iter_batched_ref(
                || BytesMut::from(&bytes[..]),
                |buf| black_box(decode(buf, known, MAX_PACKET)),
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

fn bench_encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for (name, v, packet) in cases() {
        let len = encoded(&packet, v).len();
        g.throughput(Throughput::Bytes(len as u64));
        let mut out = BytesMut::with_capacity(len);
        g.bench_function(format!("{name}/{}", version_name(v)), |b| {
            b.iter(|| {
                out.clear();
                black_box(encode(black_box(&packet), v, &mut out)).expect("encodes");
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = bench_decode, bench_encode
}
criterion_main!(benches);
