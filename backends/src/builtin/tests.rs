//! The store against real SQLite files in a temporary directory: CRUD,
//! pagination, validation, hashing, migrations, refusals of unusable
//! files, file modes, concurrent writers, change tracking, and the two
//! providers' answers.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use portcullis_acl::provider::AclDecision;
use portcullis_acl::rule::{Action, Permission};
use portcullis_auth::hash::StoredHash;
use portcullis_auth::provider::AuthDecision;
use portcullis_core::codec::{ProtocolVersion, QoS};
use portcullis_core::gate::{Access, ClientInfo, ConnectInfo, DenyReason, Password};
use portcullis_core::provider::ErrorKind;
use portcullis_core::topic::{SubscriptionFilter, TopicName};
use sqlx::{ConnectOptions, Connection};

use super::*;

fn pw(s: &str) -> Password {
    Password::new(bytes::Bytes::copy_from_slice(s.as_bytes()))
}

fn cfg(path: &Path) -> BuiltinConfig {
    BuiltinConfig { path: path.to_path_buf(), poll: Duration::from_millis(100), ..BuiltinConfig::default() }
}

async fn fresh() -> (tempfile::TempDir, Arc<UserStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = UserStore::open(&cfg(&dir.path().join("data/users.db")), OpenMode::Create).await.unwrap();
    (dir, store)
}

fn user_rule(user: &str, permission: Permission, action: Action, topic: &str) -> NewRule {
    NewRule::new(RuleSubject::Username(user.into()), permission, action, topic)
}

fn client_rule(client: &str, permission: Permission, action: Action, topic: &str) -> NewRule {
    NewRule::new(RuleSubject::ClientId(client.into()), permission, action, topic)
}

/// A raw connection to the file, for what the API does not do.
async fn raw(path: &Path) -> sqlx::SqliteConnection {
    sqlx::sqlite::SqliteConnectOptions::new().filename(path).create_if_missing(true).connect().await.unwrap()
}

#[tokio::test]
async fn users_crud_and_hashes() {
    let (dir, store) = fresh().await;
    let alice = store.add_user("alice", &pw("correct horse"), false).await.unwrap();
    assert_eq!((alice.username.as_str(), alice.superuser), ("alice", false));
    assert!(matches!(store.add_user("alice", &pw("x"), true).await, Err(StoreError::UserExists(u)) if u == "alice"));
    // Exact usernames: these are other users.
    for other in ["Alice", "alice ", " alice"] {
        assert_eq!(store.get_user(other).await.unwrap(), None, "{other:?}");
    }
    let stored = store.credentials("alice").await.unwrap().unwrap();
    assert!(stored.password_hash.starts_with("$argon2id$"), "argon2id PHC string");
    let h = StoredHash::parse(&stored.password_hash, None, None).unwrap();
    assert!(h.verify(b"correct horse").unwrap() && !h.verify(b"wrong").unwrap());
    assert!(!format!("{stored:?}").contains("argon2"), "Debug shows no hash");

    let before = store.get_user("alice").await.unwrap().unwrap();
    let after = store.set_password("alice", &pw("battery staple")).await.unwrap();
    assert!(after.updated_at >= before.updated_at && after.created_at == before.created_at);
    let h2 = store.credentials("alice").await.unwrap().unwrap().password_hash;
    assert_ne!(h2, stored.password_hash);
    assert!(StoredHash::parse(&h2, None, None).unwrap().verify(b"battery staple").unwrap());
    assert!(store.set_superuser("alice", true).await.unwrap().superuser);
    assert!(store.credentials("alice").await.unwrap().unwrap().superuser);

    assert!(matches!(store.set_password("bob", &pw("x")).await, Err(StoreError::NoSuchUser(_))));
    assert!(matches!(store.delete_user("bob").await, Err(StoreError::NoSuchUser(_))));
    store.delete_user("alice").await.unwrap();
    assert_eq!(store.get_user("alice").await.unwrap(), None);
    assert_eq!(store.credentials("alice").await.unwrap(), None);

    // The plaintext is nowhere in the files.
    store.add_user("carol", &pw("plaintext-marker-7731"), false).await.unwrap();
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(21).any(|w| w == b"plaintext-marker-7731"), "a password stored in clear");
    }
}

#[tokio::test]
async fn values_are_validated_before_they_are_stored() {
    let (_dir, store) = fresh().await;
    for (name, field) in [("", "username"), ("a\nb", "username"), ("nul\0", "username")] {
        match store.add_user(name, &pw("x"), false).await {
            Err(StoreError::Invalid { field: f, .. }) => assert_eq!(f, field),
            other => panic!("{name:?}: {other:?}"),
        }
    }
    assert!(matches!(store.add_user("u", &pw(""), false).await, Err(StoreError::Invalid { field: "password", .. })));
    let long = "x".repeat(model::MAX_TEXT_LEN + 1);
    assert!(store.add_user(&long, &pw("x"), false).await.is_err());
    let s = &store;
    let bad = |r: NewRule| async move { s.add_rule(&r).await };
    let mut r = user_rule("u", Permission::Allow, Action::All, "a/#/b");
    assert!(matches!(bad(r.clone()).await, Err(StoreError::Invalid { field: "topic", .. })));
    r.topic = "a/${user}/x".into();
    assert!(matches!(bad(r.clone()).await, Err(StoreError::Invalid { field: "topic", .. })));
    r.topic = "a/${username}/#".into();
    r.qos = Some(vec![3]);
    assert!(matches!(bad(r.clone()).await, Err(StoreError::Invalid { field: "qos", .. })));
    r.qos = Some(vec![]);
    assert!(matches!(bad(r.clone()).await, Err(StoreError::Invalid { field: "qos", .. })));
    r.qos = Some(vec![2, 0, 2]);
    assert_eq!(bad(r.clone()).await.unwrap().qos, Some(vec![0, 2]), "sorted, without duplicates");
    let empty = client_rule("", Permission::Allow, Action::All, "a");
    assert!(matches!(bad(empty).await, Err(StoreError::Invalid { field: "client_id", .. })));
    let page = store.list_users(&UserFilter::default(), PageRequest::new(0, 10)).await;
    assert!(matches!(page, Err(StoreError::Invalid { field: "page", .. })));
    let page = store.list_users(&UserFilter::default(), PageRequest::new(1, 0)).await;
    assert!(matches!(page, Err(StoreError::Invalid { field: "limit", .. })));
}

#[tokio::test]
async fn pages_and_filters() {
    let (_dir, store) = fresh().await;
    for (u, su) in [("dave", false), ("amy", true), ("carl", false), ("bea", false)] {
        store.add_user(u, &pw("p"), su).await.unwrap();
    }
    let all = UserFilter::default();
    let p1 = store.list_users(&all, PageRequest::new(1, 2)).await.unwrap();
    let names = |p: &Page<User>| p.items.iter().map(|u| u.username.clone()).collect::<Vec<_>>();
    assert_eq!((names(&p1), p1.total, p1.has_next()), (vec!["amy".into(), "bea".into()], 4, true));
    let p2 = store.list_users(&all, PageRequest::new(2, 2)).await.unwrap();
    assert_eq!((names(&p2), p2.has_next()), (vec!["carl".into(), "dave".into()], false), "an exact multiple");
    let p3 = store.list_users(&all, PageRequest::new(3, 2)).await.unwrap();
    assert!(p3.items.is_empty() && !p3.has_next());
    let f = UserFilter { username_contains: Some("a".into()), superuser: Some(false) };
    assert_eq!(names(&store.list_users(&f, PageRequest::default()).await.unwrap()), vec!["bea", "carl", "dave"]);
    // The substring is literal, and case-sensitive.
    let f = UserFilter { username_contains: Some("%".into()), superuser: None };
    assert_eq!(store.list_users(&f, PageRequest::default()).await.unwrap().total, 0);
    let f = UserFilter { username_contains: Some("A".into()), superuser: None };
    assert_eq!(store.list_users(&f, PageRequest::default()).await.unwrap().total, 0);
}

#[tokio::test]
async fn rules_in_decision_order() {
    let (_dir, store) = fresh().await;
    let mut late = user_rule("u", Permission::Deny, Action::Publish, "x/#");
    late.priority = 10;
    let late = store.add_rule(&late).await.unwrap();
    let u0 = store.add_rule(&user_rule("u", Permission::Allow, Action::All, "u/${username}/#")).await.unwrap();
    let c0 = store.add_rule(&client_rule("c", Permission::Deny, Action::Subscribe, "eq #")).await.unwrap();
    let mut early = client_rule("c", Permission::Allow, Action::Publish, "c/${clientid}");
    early.priority = -5;
    early.retain = Some(false);
    let early = store.add_rule(&early).await.unwrap();
    store.add_rule(&user_rule("other", Permission::Allow, Action::All, "#")).await.unwrap();
    store.add_rule(&client_rule("u", Permission::Allow, Action::All, "#")).await.unwrap();

    let ids = |v: &[StoredRule]| v.iter().map(|r| r.id).collect::<Vec<_>>();
    let got = store.rules_for_client(Some("u"), "c").await.unwrap();
    assert_eq!(ids(&got), vec![early.id, c0.id, u0.id, late.id], "priority, client id first, then added order");
    assert_eq!(got[0].retain, Some(false));
    assert_eq!(ids(&store.rules_for_client(None, "c").await.unwrap()), vec![early.id, c0.id], "no username");
    let subject = RuleSubject::Username("u".into());
    let listed = store.list_rules(Some(&subject), PageRequest::default()).await.unwrap();
    assert_eq!(ids(&listed.items), vec![u0.id, late.id]);
    assert_eq!(store.list_rules(None, PageRequest::new(1, 4)).await.unwrap().total, 6);
    assert_eq!(store.get_rule(u0.id).await.unwrap().unwrap(), u0);

    store.delete_rule(late.id).await.unwrap();
    assert!(matches!(store.delete_rule(late.id).await, Err(StoreError::NoSuchRule(_))));
    assert_eq!(store.delete_rules(&RuleSubject::ClientId("c".into())).await.unwrap(), 2);
    assert_eq!(ids(&store.rules_for_client(Some("u"), "c").await.unwrap()), vec![u0.id]);
}

/// A file at version 1 (made by running only the first migration) with a
/// user and a rule in it: opening migrates it to the current version,
/// keeps the data, and change tracking works on it.
#[tokio::test]
async fn migrates_from_version_1_to_current() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let hash = portcullis_auth::hash::hash_password(b"old-pw", portcullis_auth::hash::NewHash::Argon2id).unwrap();
    {
        let mut c = raw(&path).await;
        assert_eq!(schema::migrate_to(&mut c, 1).await.unwrap(), 0);
        assert_eq!(schema::version(&mut c).await.unwrap(), Some(1));
        sqlx::query("INSERT INTO users (username, password_hash, is_superuser, created_at, updated_at) VALUES ('old', ?, 1, 5, 6)")
            .bind(&hash)
            .execute(&mut c)
            .await
            .unwrap();
        sqlx::query(
            "INSERT INTO acl_rules (subject_kind, subject, permission, action, topic, qos, created_at) \
             VALUES ('username', 'old', 'allow', 'publish', 'o/${username}', '1', 7)",
        )
        .execute(&mut c)
        .await
        .unwrap();
        c.close().await.unwrap();
    }
    let store = UserStore::open(&cfg(&path), OpenMode::Existing).await.unwrap();
    let mut c = raw(&path).await;
    assert_eq!(schema::version(&mut c).await.unwrap(), Some(schema::CURRENT_VERSION));
    let old = store.get_user("old").await.unwrap().unwrap();
    assert_eq!((old.superuser, old.created_at, old.updated_at), (true, 5, 6));
    assert_eq!(store.credentials("old").await.unwrap().unwrap().password_hash, hash);
    let rules = store.rules_for_client(Some("old"), "x").await.unwrap();
    assert_eq!((rules.len(), rules[0].qos.clone(), rules[0].action), (1, Some(vec![1]), Action::Publish));
    let r0 = store.revision().await.unwrap();
    store.set_superuser("old", false).await.unwrap();
    assert_eq!(store.revision().await.unwrap(), r0 + 1, "version 2's triggers count changes");
    // Opening again migrates nothing.
    drop(store);
    let again = UserStore::open(&cfg(&path), OpenMode::Existing).await.unwrap();
    assert!(!again.get_user("old").await.unwrap().unwrap().superuser);
}

#[tokio::test]
async fn unusable_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let open = |p: &Path, mode| {
        let c = cfg(p);
        async move { UserStore::open(&c, mode).await.map(drop).map_err(|e| e.to_string()) }
    };
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    for mode in [OpenMode::Create, OpenMode::Existing, OpenMode::CheckOnly] {
        let e = open(&garbage, mode).await.unwrap_err();
        assert!(e.starts_with(&format!("{}: ", garbage.display())) && e.contains("not a database"), "{mode:?}: {e}");
    }

    let newer = dir.path().join("newer.db");
    drop(UserStore::open(&cfg(&newer), OpenMode::Create).await.unwrap());
    let mut c = raw(&newer).await;
    sqlx::query("UPDATE schema_version SET version = 99").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    for mode in [OpenMode::Existing, OpenMode::CheckOnly] {
        let e = open(&newer, mode).await.unwrap_err();
        assert!(e.contains("schema version 99 is newer") && e.contains("newer.db"), "{e}");
    }

    let foreign = dir.path().join("foreign.db");
    let mut c = raw(&foreign).await;
    sqlx::query("CREATE TABLE things (x)").execute(&mut c).await.unwrap();
    c.close().await.unwrap();
    let e = open(&foreign, OpenMode::Create).await.unwrap_err();
    assert!(e.contains("not a Portcullis user store"), "{e}");
    let mut c = raw(&foreign).await;
    let tables: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetch_one(&mut c).await.unwrap();
    assert_eq!(tables, 1, "nothing was written into a foreign database");
    let journal: String = sqlx::query_scalar("PRAGMA journal_mode").fetch_one(&mut c).await.unwrap();
    assert_eq!(journal, "delete", "not even its journal mode");

    let e = open(dir.path(), OpenMode::Create).await.unwrap_err();
    assert!(e.contains("is a directory"), "{e}");
    let missing = dir.path().join("missing/users.db");
    let e = open(&missing, OpenMode::Existing).await.unwrap_err();
    assert!(e.contains("no user store here"), "{e}");
    open(&missing, OpenMode::CheckOnly).await.unwrap();
    assert!(!missing.exists() && !missing.parent().unwrap().exists(), "--check-config creates nothing");
    // A valid store nobody holds open is left as it was: no -wal, no -shm.
    let idle = dir.path().join("idle.db");
    UserStore::open(&cfg(&idle), OpenMode::Create).await.unwrap().close().await;
    let files = || {
        std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("idle"))
            .count()
    };
    assert_eq!(files(), 1, "close() folds the WAL back");
    open(&idle, OpenMode::CheckOnly).await.unwrap();
    assert_eq!(files(), 1, "a check leaves no -wal or -shm behind");

    // A store whose pages were overwritten: quick_check finds it at open.
    let broken = dir.path().join("broken.db");
    let s = UserStore::open(&cfg(&broken), OpenMode::Create).await.unwrap();
    for i in 0..50 {
        s.add_rule(&user_rule(&format!("user-{i}"), Permission::Allow, Action::All, "a/b/c/d/e/f/g")).await.unwrap();
    }
    drop(s);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut bytes = std::fs::read(&broken).unwrap();
    assert!(bytes.len() >= 4 * 4096, "{} bytes", bytes.len());
    for b in &mut bytes[4096 + 8..3 * 4096] {
        *b = 0xa5;
    }
    std::fs::write(&broken, &bytes).unwrap();
    let _ = std::fs::remove_file(broken.with_extension("db-wal"));
    let e = open(&broken, OpenMode::Existing).await.unwrap_err();
    assert!(e.contains("broken.db") && (e.contains("corrupt") || e.contains("malformed")), "{e}");
}

#[tokio::test]
async fn files_are_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new/sub/users.db");
    let store = UserStore::open(&cfg(&path), OpenMode::Create).await.unwrap();
    store.add_user("u", &pw("p"), false).await.unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    for side in ["db-wal", "db-shm"] {
        let p = path.with_extension(side);
        assert!(p.exists(), "WAL mode: {side}");
        assert_eq!(mode(&p), 0o600, "{side}");
    }
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    assert_eq!(mode(path.parent().unwrap().parent().unwrap()), 0o700);
}

/// Two stores on one file (as two processes would be: two write
/// connections, SQLite's lock between them), each written to by several
/// tasks at once: every write lands, none fails on a lock, and the
/// revision counts them all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("users.db");
    let a = UserStore::open(&cfg(&path), OpenMode::Create).await.unwrap();
    let b = UserStore::open(&cfg(&path), OpenMode::Existing).await.unwrap();
    let start = a.revision().await.unwrap();
    let mut tasks = Vec::new();
    for t in 0..6 {
        let store = if t % 2 == 0 { Arc::clone(&a) } else { Arc::clone(&b) };
        tasks.push(tokio::spawn(async move {
            let name = format!("user-{t}");
            store.add_user(&name, &pw("first"), false).await?;
            for i in 0..10 {
                let topic = format!("t/{t}/{i}");
                store.add_rule(&user_rule(&name, Permission::Allow, Action::Publish, &topic)).await?;
                store.set_superuser(&name, i % 2 == 0).await?;
            }
            store.set_password(&name, &pw("second")).await?;
            Ok::<_, StoreError>(())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let users = a.list_users(&UserFilter::default(), PageRequest::default()).await.unwrap();
    assert_eq!(users.total, 6);
    assert!(users.items.iter().all(|u| !u.superuser), "each user's last flag write was false");
    assert_eq!(b.list_rules(None, PageRequest::new(1, 100)).await.unwrap().total, 60);
    for u in &users.items {
        let h = b.credentials(&u.username).await.unwrap().unwrap().password_hash;
        assert!(StoredHash::parse(&h, None, None).unwrap().verify(b"second").unwrap());
    }
    assert_eq!(a.revision().await.unwrap(), start + 6 * (1 + 20 + 1));
}

/// A store sees another store's writes (another process's) through its
/// poll, and its own at once.
#[tokio::test]
async fn changes_are_published() {
    let (dir, store) = fresh().await;
    store.watch(Duration::from_millis(100));
    let mut changes = store.changes();
    let r0 = *changes.borrow_and_update();
    store.add_rule(&user_rule("u", Permission::Allow, Action::All, "#")).await.unwrap();
    assert!(changes.has_changed().unwrap(), "own write published at once");
    let r1 = *changes.borrow_and_update();
    assert_eq!(r1, r0 + 1);
    let other = UserStore::open(&cfg(&dir.path().join("data/users.db")), OpenMode::Existing).await.unwrap();
    other.delete_rules(&RuleSubject::Username("u".into())).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), changes.changed()).await.expect("seen within the poll").unwrap();
    assert_eq!(*changes.borrow(), r1 + 1);
}

/// A poll that read the file before a write committed never publishes
/// its older revision over the write's (the revision seen never goes
/// back while this process writes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_poll_does_not_go_back() {
    let (_dir, store) = fresh().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.revision().await.unwrap();
            }
        })
    };
    let changes = store.changes();
    let mut last = *changes.borrow();
    for i in 0..200 {
        store.add_rule(&user_rule("u", Permission::Allow, Action::All, &format!("t/{i}"))).await.unwrap();
        for _ in 0..3 {
            tokio::task::yield_now().await;
            let now = *changes.borrow();
            assert!(now > last, "write {i}: revision seen went from {last} to {now}");
        }
        last = *changes.borrow();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    poller.await.unwrap();
}

fn connect_info(username: Option<&str>, password: Option<&str>) -> ConnectInfo {
    ConnectInfo {
        client_id: "c1".into(),
        username: username.map(Into::into),
        password: password.map(pw),
        peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        listener: "l".into(),
        protocol: ProtocolVersion::V5.into(),
        cert: None,
    }
}

fn client(username: Option<&str>, client_id: &str) -> ClientInfo {
    ClientInfo {
        client_id: client_id.into(),
        username: username.map(Into::into),
        peer: SocketAddr::from(([127, 0, 0, 1], 1)),
        listener: "l".into(),
        protocol: ProtocolVersion::V5.into(),
        superuser: false,
        context: None,
        conn_id: 0,
        cert: None,
        connected_at: 0,
        keep_alive: 0,
    }
}

#[tokio::test]
async fn auth_provider_answers() {
    let (dir, store) = fresh().await;
    store.add_user("alice", &pw("a-pw"), false).await.unwrap();
    store.add_user("root", &pw("r-pw"), true).await.unwrap();
    let (p, _) = auth_provider("users", &cfg(&dir.path().join("data/users.db")), OpenMode::Existing).await.unwrap();
    assert_eq!(p.kind(), "builtin");
    let ask = |u: Option<&'static str>, w: Option<&'static str>| {
        let p = Arc::clone(&p);
        async move { p.authenticate(&connect_info(u, w)).await.unwrap() }
    };
    let a = ask(Some("alice"), Some("a-pw")).await;
    assert!(matches!(a.decision, AuthDecision::Allow { superuser: false, .. }), "{a:?}");
    assert_eq!(a.rule.as_deref(), Some("builtin:users"));
    assert!(matches!(ask(Some("root"), Some("r-pw")).await.decision, AuthDecision::Allow { superuser: true, .. }));
    for (u, w) in [(Some("alice"), Some("r-pw")), (Some("alice"), None), (Some("root"), Some(""))] {
        assert_eq!(ask(u, w).await.decision, AuthDecision::Deny(DenyReason::BadCredentials), "{u:?} {w:?}");
    }
    for (u, w) in [(Some("bob"), Some("a-pw")), (Some("Alice"), Some("a-pw")), (None, None)] {
        assert_eq!(ask(u, w).await.decision, AuthDecision::Ignore, "{u:?}");
    }
    assert_eq!(p.health(), Some(true));
}

#[tokio::test]
async fn acl_provider_decides_with_placeholders() {
    let (dir, store) = fresh().await;
    store.add_rule(&user_rule("alice", Permission::Allow, Action::Publish, "home/${username}/#")).await.unwrap();
    let mut sub = user_rule("alice", Permission::Allow, Action::Subscribe, "news/#");
    sub.qos = Some(vec![0, 1]);
    store.add_rule(&sub).await.unwrap();
    let mut deny = client_rule("dev-1", Permission::Deny, Action::Publish, "home/alice/secret");
    deny.priority = 0;
    store.add_rule(&deny).await.unwrap();
    store.add_rule(&client_rule("dev-1", Permission::Allow, Action::All, "dev/${clientid}/#")).await.unwrap();
    let (p, _) = acl_provider("rules", &cfg(&dir.path().join("data/users.db")), OpenMode::Existing).await.unwrap();

    let topic = |t: &str| TopicName::new(t).unwrap();
    let filter = |f: &str| SubscriptionFilter::parse(f).unwrap();
    let publish = |c: ClientInfo, t: &str| {
        let p = Arc::clone(&p);
        let t = topic(t);
        async move { p.authorize(&c, Access::Publish { topic: &t, qos: QoS::AtMostOnce, retain: false }).await.unwrap() }
    };
    let subscribe = |c: ClientInfo, f: &str, qos: QoS| {
        let p = Arc::clone(&p);
        let f = filter(f);
        async move { p.authorize(&c, Access::Subscribe { filter: &f, qos }).await.unwrap() }
    };
    let alice = || client(Some("alice"), "phone");
    assert_eq!(publish(alice(), "home/alice/x").await.decision, AclDecision::Allow);
    assert_eq!(publish(alice(), "home/bob/x").await.decision, AclDecision::Ignore);
    assert_eq!(subscribe(alice(), "news/today", QoS::AtLeastOnce).await.decision, AclDecision::Allow);
    assert_eq!(
        subscribe(alice(), "news/today", QoS::ExactlyOnce).await.decision,
        AclDecision::Ignore,
        "QoS 2 not listed"
    );
    // The client id's deny comes first at equal priority.
    let dev = || client(Some("alice"), "dev-1");
    let a = publish(dev(), "home/alice/secret").await;
    assert_eq!(a.decision, AclDecision::Deny);
    assert!(a.rule.unwrap().starts_with("builtin:rules rule "));
    assert_eq!(publish(dev(), "dev/dev-1/t").await.decision, AclDecision::Allow);
    assert_eq!(publish(client(None, "dev-2"), "dev/dev-2/t").await.decision, AclDecision::Ignore);

    // A row another tool wrote that the ACL cannot read fails closed.
    let mut c = raw(&dir.path().join("data/users.db")).await;
    sqlx::query(
        "INSERT INTO acl_rules (subject_kind, subject, permission, action, topic, created_at) \
         VALUES ('username', 'alice', 'allow', 'all', 'a/#/b', 0)",
    )
    .execute(&mut c)
    .await
    .unwrap();
    let t = topic("home/alice/x");
    let e =
        p.authorize(&alice(), Access::Publish { topic: &t, qos: QoS::AtMostOnce, retain: false }).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::BadResponse, "{e}");
    assert_eq!(p.health(), Some(true), "bad data does not mark the store down");
}

#[tokio::test]
async fn a_store_that_cannot_open_is_a_store_error_at_path() {
    use crate::common::BuildErrorKind;
    let dir = tempfile::tempdir().unwrap();
    let e = auth_provider("users", &cfg(&dir.path().join("none.db")), OpenMode::Existing).await.map(drop).unwrap_err();
    assert!(e.is("path", BuildErrorKind::Store), "{e}");
    assert!(e.reason.contains("no user store here"), "{e}");
    let bad = BuiltinConfig { readers: 0, ..cfg(&dir.path().join("x.db")) };
    let e = acl_provider("rules", &bad, OpenMode::Create).await.map(drop).unwrap_err();
    assert!(e.is("readers", BuildErrorKind::Invalid), "{e}");
}
