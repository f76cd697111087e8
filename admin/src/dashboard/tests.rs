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
