use super::*;

fn p() -> Prefix {
    Prefix::default()
}
fn t(s: &str) -> TopicName {
    TopicName::new(s).unwrap()
}
fn f(s: &str) -> TopicFilter {
    TopicFilter::new(s).unwrap()
}

#[test]
fn topics_encode_level_by_level() {
    assert_eq!(topic_subject(&p(), &t("a/b")), "portcullis.m.a.b");
    assert_eq!(topic_subject(&p(), &t("a.b/c d")), "portcullis.m.a=2Eb.c=20d");
    assert_eq!(topic_subject(&p(), &t("/")), "portcullis.m.=.=");
    assert_eq!(topic_subject(&p(), &t("x//y/")), "portcullis.m.x.=.y.=");
    assert_eq!(topic_subject(&p(), &t("=")), "portcullis.m.=3D");
    assert_eq!(topic_subject(&p(), &t("*/>")), "portcullis.m.=2A.=3E");
    assert_eq!(topic_subject(&p(), &t("caf\u{e9}")), "portcullis.m.caf=C3=A9");
    assert_eq!(topic_subject(&p(), &t("$SYS/brokers")), "portcullis.s.=24SYS.brokers");
    assert_eq!(topic_subject(&p(), &t("a/$b")), "portcullis.m.a.=24b");
    assert_eq!(topic_subject(&p(), &t("A-z_09")), "portcullis.m.A-z_09");
    let q = Prefix::new("site1.mqtt").unwrap();
    assert_eq!(topic_subject(&q, &t("a")), "site1.mqtt.m.a");
}

#[test]
fn subject_length_is_computed_without_building() {
    for s in ["a", "/", "a.b/c d", "$SYS/x/", "caf\u{e9}//\u{1F600}"] {
        assert_eq!(topic_subject_len(&p(), &t(s)), topic_subject(&p(), &t(s)).len(), "{s}");
    }
}

#[test]
fn decoding_inverts_encoding() {
    for s in ["a", "/", "//", "a.b/c d", "$SYS/x", "$", "=/==/=2E", "caf\u{e9}", "a/$", " "] {
        assert_eq!(decode_subject(&p(), &topic_subject(&p(), &t(s))).unwrap(), t(s), "{s}");
    }
}

#[test]
fn malformed_subjects_are_refused() {
    let d = |s: &str| decode_subject(&p(), s);
    assert_eq!(d("other.m.a"), Err(DecodeError::NotUnderPrefix));
    assert_eq!(d("portcullisx.m.a"), Err(DecodeError::NotUnderPrefix));
    assert_eq!(d("portcullis.m"), Err(DecodeError::NoLevel));
    assert_eq!(d("portcullis.x.a"), Err(DecodeError::UnknownRoot));
    assert_eq!(d("portcullis.m.a..b"), Err(DecodeError::EmptyToken));
    assert_eq!(d("portcullis.m.a."), Err(DecodeError::EmptyToken));
    assert_eq!(d("portcullis.m.*"), Err(DecodeError::BadByte(b'*')));
    assert_eq!(d("portcullis.m.>"), Err(DecodeError::BadByte(b'>')));
    assert_eq!(d("portcullis.m.a b"), Err(DecodeError::BadByte(b' ')));
    assert_eq!(d("portcullis.m.=2e"), Err(DecodeError::BadEscape), "lowercase hex");
    assert_eq!(d("portcullis.m.=2"), Err(DecodeError::BadEscape));
    assert_eq!(d("portcullis.m.a=="), Err(DecodeError::BadEscape));
    assert_eq!(d("portcullis.m.=41"), Err(DecodeError::NotCanonical(b'A')));
    assert_eq!(d("portcullis.m.=C3"), Err(DecodeError::NotUtf8));
    assert_eq!(d("portcullis.m.=24SYS"), Err(DecodeError::WrongRoot));
    assert_eq!(d("portcullis.s.SYS"), Err(DecodeError::WrongRoot));
    assert_eq!(d("portcullis.m.=2B"), Err(DecodeError::Topic(TopicError::WildcardInName)));
    assert_eq!(d("portcullis.m.=23"), Err(DecodeError::Topic(TopicError::WildcardInName)));
    assert_eq!(d("portcullis.m.=00"), Err(DecodeError::Topic(TopicError::NullChar)));
    assert_eq!(d("portcullis.m.=2F"), Ok(t("/")), "an escaped slash is a level separator");
}

#[test]
fn filters_map_wildcards() {
    let s = |x: &str| filter_subjects(&p(), &f(x));
    assert_eq!(s("a/b"), ["portcullis.m.a.b"]);
    assert_eq!(s("a/+/c"), ["portcullis.m.a.*.c"]);
    assert_eq!(s("+"), ["portcullis.m.*"]);
    assert_eq!(s("#"), ["portcullis.m.>"]);
    assert_eq!(s("a/#"), ["portcullis.m.a", "portcullis.m.a.>"]);
    assert_eq!(s("+/#"), ["portcullis.m.*", "portcullis.m.*.>"]);
    assert_eq!(s("/#"), ["portcullis.m.=", "portcullis.m.=.>"]);
    assert_eq!(s("$SYS/#"), ["portcullis.s.=24SYS", "portcullis.s.=24SYS.>"]);
    assert_eq!(s("$SYS/+/x"), ["portcullis.s.=24SYS.*.x"]);
    assert_eq!(s("+/+"), ["portcullis.m.*.*"]);
}

#[test]
fn shared_subscriptions_get_a_queue_per_group_and_filter() {
    let sub = |x: &str| subscription(&p(), &SubscriptionFilter::parse(x).unwrap());
    let a = sub("$share/g/a/#");
    assert_eq!(a.subjects, ["portcullis.m.a", "portcullis.m.a.>"]);
    let qa = a.queue.unwrap();
    assert!(qa.starts_with("g."), "{qa}");
    assert_eq!(qa.len(), 2 + 32);
    assert_eq!(sub("$share/g/a/#").queue.unwrap(), qa, "stable");
    assert_ne!(sub("$share/g/a/+").queue.unwrap(), qa, "same group, other filter");
    assert_ne!(sub("$share/h/a/#").queue.unwrap(), qa, "other group, same filter");
    assert_eq!(sub("a/#").queue, None);
    let q = sub("$queue/x").queue.unwrap();
    assert!(q.starts_with("=24queue."), "{q}");
    let long = sub(&format!("$share/{}/x", "\u{e9}".repeat(100))).queue.unwrap();
    assert_eq!(long.len(), 32 + 1 + 32);
    assert!(long.bytes().all(|b| is_kept(b) || b == b'=' || b == b'.'), "{long}");
    // The group's length is hashed: (g, "a/b") and (g + "/a", "b") differ.
    assert_ne!(queue_group("g", &f("a/b")), queue_group("g/a", &f("b")));
}

#[test]
fn prefixes_are_valid_subject_tokens() {
    assert!(Prefix::new("portcullis").is_ok());
    assert!(Prefix::new("a.b-c_d.E9").is_ok());
    assert_eq!(Prefix::new(""), Err(PrefixError::Empty));
    assert_eq!(Prefix::new("a..b"), Err(PrefixError::EmptyToken(2)));
    assert_eq!(Prefix::new(".a"), Err(PrefixError::EmptyToken(1)));
    assert_eq!(Prefix::new("a."), Err(PrefixError::EmptyToken(2)));
    assert_eq!(Prefix::new("a*"), Err(PrefixError::BadChar('*')));
    assert_eq!(Prefix::new("a b"), Err(PrefixError::BadChar(' ')));
    assert_eq!(Prefix::new(">"), Err(PrefixError::BadChar('>')));
    assert_eq!(Prefix::new("\u{e9}"), Err(PrefixError::BadChar('\u{e9}')));
    assert_eq!(Prefix::new(&"a".repeat(65)), Err(PrefixError::TooLong(65)));
}
