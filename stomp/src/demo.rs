//! The STOMP demo page (issue 17): static HTML, CSS and a script from
//! `stomp/demo/`, embedded in the binary, and the two browser clients it
//! uses, vendored from npm as published:
//!
//! * `sockjs.min.js` — sockjs-client 1.6.1 (MIT), `dist/sockjs.min.js`,
//!   licence in `sockjs.LICENSE`;
//! * `stomp.umd.min.js` — @stomp/stompjs 7.5.0 (Apache-2.0),
//!   `bundles/stomp.umd.min.js`, licence in `stomp.LICENSE`.
//!
//! The SockJS listener serves [`asset`] under `/demo/` when its `demo`
//! key is on, and answers `/demo/config.json` itself (the page reads the
//! SockJS path from it). The table is fixed: a path is either one of its
//! names or nothing, so no request reaches the file system.

/// One embedded file of the STOMP demo page.
#[derive(Debug, Clone, Copy)]
pub struct DemoAsset {
    /// The file's bytes, as committed.
    pub body: &'static [u8],
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";

/// The embedded files: name under `/demo/`, content type, bytes. A file
/// added to `stomp/demo/` must be listed here (a test holds the table
/// against the directory).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("index.html", HTML, include_bytes!("../demo/index.html")),
    ("demo.js", JS, include_bytes!("../demo/demo.js")),
    ("demo.css", CSS, include_bytes!("../demo/demo.css")),
    ("sockjs.min.js", JS, include_bytes!("../demo/sockjs.min.js")),
    ("sockjs.LICENSE", TEXT, include_bytes!("../demo/sockjs.LICENSE")),
    ("stomp.umd.min.js", JS, include_bytes!("../demo/stomp.umd.min.js")),
    ("stomp.LICENSE", TEXT, include_bytes!("../demo/stomp.LICENSE")),
];

/// What the embedded files may weigh together: 128 KiB. They weigh
/// 106,306 bytes (104 KiB): 90.5 KiB the two vendored clients and their
/// licences, 13.3 KiB the page's own three files.
pub const ASSET_BUDGET: usize = 128 * 1024;

/// The demo page's file at `path` (relative to the demo root, "" =
/// index.html), if any.
pub fn asset(path: &str) -> Option<DemoAsset> {
    let name = if path.is_empty() { "index.html" } else { path };
    ASSETS.iter().find(|(n, _, _)| *n == name).map(|&(_, content_type, body)| DemoAsset { body, content_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(name: &str) -> &'static str {
        std::str::from_utf8(asset(name).expect(name).body).expect("utf-8")
    }

    #[test]
    fn every_file_in_the_directory_is_reachable_and_nothing_else() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("stomp/demo")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut listed: Vec<String> = ASSETS.iter().map(|(n, _, _)| n.to_string()).collect();
        listed.sort();
        assert_eq!(on_disk, listed);
        for name in &on_disk {
            let a = asset(name).unwrap_or_else(|| panic!("{name} not reachable"));
            assert_eq!(a.body, std::fs::read(dir.join(name)).expect("read").as_slice(), "{name}");
        }
    }

    #[test]
    fn the_root_is_the_index_and_types_follow_the_extension() {
        assert_eq!(asset("").expect("root").body, asset("index.html").expect("index").body);
        for (name, _, _) in ASSETS {
            let want = match name.rsplit_once('.').map(|(_, ext)| ext) {
                Some("html") => HTML,
                Some("js") => JS,
                Some("css") => CSS,
                Some("LICENSE") => TEXT,
                other => panic!("{name}: no type for {other:?}"),
            };
            assert_eq!(asset(name).expect(name).content_type, want, "{name}");
        }
    }

    #[test]
    fn unknown_paths_and_traversal_find_nothing() {
        for p in [
            "nope.js",
            "/index.html",
            "index.html/",
            "./index.html",
            "../demo/index.html",
            "../src/demo.rs",
            "..%2fCargo.toml",
            "INDEX.HTML",
            "config.json",
            "demo/",
            "sockjs.min.js.map",
            "index.html\0",
        ] {
            assert!(asset(p).is_none(), "{p:?}");
        }
    }

    #[test]
    fn assets_fit_the_budget() {
        let total: usize = ASSETS.iter().map(|(_, _, b)| b.len()).sum();
        assert!(total <= ASSET_BUDGET, "demo assets weigh {total} bytes, over the {ASSET_BUDGET}-byte budget");
    }

    /// The page obeys the listener's CSP (`script-src 'self'`, `style-src
    /// 'self'`): no inline script, handler or style; every file it loads
    /// is in the table and named relatively.
    #[test]
    fn the_page_loads_only_embedded_files_with_no_inline_code() {
        let html = text("index.html");
        let lower = html.to_ascii_lowercase();
        assert_eq!(lower.matches("<script").count(), lower.matches("<script src=\"").count() + 1);
        assert_eq!(lower.matches("<script type=\"module\" src=\"").count(), 1);
        assert!(!lower.contains(" style="), "inline style");
        assert!(!lower.contains("javascript:"), "javascript: URL");
        for word in lower.split(|c: char| c.is_whitespace() || c == '<') {
            assert!(!(word.starts_with("on") && word.contains('=')), "inline handler: {word}");
        }
        for attr in ["src=\"", "href=\""] {
            for (at, _) in html.match_indices(attr) {
                let rest = &html[at + attr.len()..];
                let url = &rest[..rest.find('"').expect("closing quote")];
                if url == "data:," {
                    continue; // the empty icon: no /favicon.ico request
                }
                assert!(asset(url).is_some(), "index.html loads {url}, which is not embedded");
            }
        }
    }

    /// Peer data goes into the page as text only, and the script never
    /// evaluates strings.
    #[test]
    fn the_script_renders_text_only() {
        let js = text("demo.js");
        for bad in ["innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function"] {
            assert!(!js.contains(bad), "demo.js uses {bad}");
        }
        assert!(js.contains("fetch('config.json'"), "config.json is fetched relatively");
    }
}
