use super::*;

#[test]
fn assets_fit_the_budget() {
    let total: usize = ASSETS.iter().map(|(_, _, b)| b.len()).sum();
    assert!(total <= ASSET_BUDGET, "dashboard assets weigh {total} bytes, over the {ASSET_BUDGET}-byte budget");
}

#[test]
fn every_file_in_the_directory_is_embedded_and_nothing_else() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dashboard");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("admin/dashboard")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    on_disk.sort();
    let mut listed: Vec<String> = ASSETS.iter().map(|(n, _, _)| n.to_string()).collect();
    listed.sort();
    assert_eq!(on_disk, listed);
}

#[test]
fn assets_use_relative_urls_only() {
    for (name, _, body) in ASSETS {
        let text = std::str::from_utf8(body).expect("utf-8");
        if *name == "mqtt.esm.js" {
            // MQTT.js opens the WebSocket it is given and nothing else: no
            // XHR, no global fetch (its `fetch(` are an LRU cache's method).
            assert!(!text.contains("XMLHttpRequest") && !text.contains("importScripts"), "{name} makes requests");
            for (at, _) in text.match_indices("fetch(") {
                let before = &body[at.saturating_sub(6)..at];
                assert!(
                    before.ends_with(b".") || before.ends_with(b"async ") || before.ends_with(b"\""),
                    "{name}: a call of fetch at {at}"
                );
            }
            continue;
        }
        if VENDORED.contains(name) {
            // uPlot names its home page in a comment and makes no request.
            assert!(!text.contains("fetch(") && !text.contains("XMLHttpRequest"), "{name} makes requests");
            continue;
        }
        for bad in ["http://", "https://", "src=\"/", "href=\"/", "fetch('/", "'/api/"] {
            // The SVG namespace is a name, not a request.
            let hits = text.matches(bad).count()
                - usize::from(bad == "http://" && text.contains("http://www.w3.org/2000/svg"));
            assert_eq!(hits, 0, "{name} contains {bad:?}");
        }
    }
}

#[test]
fn cookie_is_http_only_same_site_strict_and_scoped_to_the_base_path() {
    assert_eq!(
        sessions::set_cookie("t", "/portcullis"),
        "portcullis_session=t; Path=/portcullis/; HttpOnly; SameSite=Strict"
    );
    assert!(sessions::clear_cookie("/").contains("Max-Age=0"));
}

#[test]
fn the_cookie_token_is_found_among_others() {
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, HeaderValue::from_static("a=b; portcullis_session=xyz; c=d"));
    assert_eq!(sessions::cookie_token(&h), Some("xyz"));
    h.insert(header::COOKIE, HeaderValue::from_static("portcullis_sessionx=1"));
    assert_eq!(sessions::cookie_token(&h), None);
}

#[test]
fn csrf_needs_the_exact_token() {
    let mut h = HeaderMap::new();
    assert!(!sessions::csrf_ok(&h, "abc"));
    h.insert(CSRF_HEADER, HeaderValue::from_static("abd"));
    assert!(!sessions::csrf_ok(&h, "abc"));
    h.insert(CSRF_HEADER, HeaderValue::from_static("abc"));
    assert!(sessions::csrf_ok(&h, "abc"));
}

fn keys(dir: &std::path::Path) -> crate::access::keys::KeyStore {
    let boot = dir.join("boot");
    std::fs::write(&boot, "admin:secret-0123456789abcdef:administrator\nview:secret-0123456789abcdef:viewer\n")
        .expect("bootstrap");
    crate::access::keys::KeyStore::load(&dir.join("data"), Some(&boot)).expect("keys")
}

fn with_cookie(token: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::COOKIE, HeaderValue::from_str(&format!("{COOKIE}={token}")).expect("ascii"));
    h
}

#[tokio::test(start_paused = true)]
async fn a_session_ends_when_idle_for_the_timeout_and_use_keeps_it_alive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let s = Sessions::new(std::time::Duration::from_secs(60));
    let name = keys.list().into_iter().find(|k| k.api_key == "admin").expect("admin").name;
    let (token, csrf) = s.create(name, "admin".to_string());
    let h = with_cookie(&token);
    for _ in 0..3 {
        tokio::time::advance(std::time::Duration::from_secs(50)).await;
        let got = s.lookup(&h, &keys).expect("alive while used");
        assert_eq!((got.role, got.csrf.as_str()), (Role::Administrator, csrf.as_str()));
    }
    tokio::time::advance(std::time::Duration::from_secs(61)).await;
    assert!(s.lookup(&h, &keys).is_none());
    assert!(s.is_empty(), "an ended session is removed");
    assert!(s.lookup(&with_cookie("not-a-token"), &keys).is_none());
}

#[tokio::test(start_paused = true)]
async fn sessions_are_bounded_and_the_least_recently_used_goes_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let keys = keys(dir.path());
    let name = keys.list().into_iter().find(|k| k.api_key == "view").expect("view").name;
    let s = Sessions::new(std::time::Duration::from_secs(3600));
    let (first, _) = s.create(name.clone(), "view".to_string());
    tokio::time::advance(std::time::Duration::from_secs(1)).await;
    for _ in 0..sessions::MAX_SESSIONS + 10 {
        s.create(name.clone(), "view".to_string());
    }
    assert_eq!(s.len(), sessions::MAX_SESSIONS);
    assert!(s.lookup(&with_cookie(&first), &keys).is_none());
}
