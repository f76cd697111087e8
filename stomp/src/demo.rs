//! The STOMP demo page's embedded files (stub; the demo page replaces it).

/// One embedded file of the STOMP demo page.
#[derive(Debug)]
pub struct DemoAsset {
    pub body: &'static [u8],
    pub content_type: &'static str,
}

/// The demo page's file at `path` (relative to the demo root, "" = index.html), if any.
pub fn asset(path: &str) -> Option<DemoAsset> {
    let _ = path;
    None
}
