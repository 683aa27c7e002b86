//! The operator's page (`GET /` on the management plane): static HTML, script and style
//! embedded in the binary (no build step, nothing fetched from elsewhere). The script polls
//! `GET /api/overview` twice a second with the token the operator gives it, and draws every
//! channel's state, its counters, the alerts and the last events of the stoppage record.

/// One file of the page.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Asset {
    pub(crate) content_type: &'static str,
    pub(crate) body: &'static str,
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_str!("ui/index.html"),
};
const SCRIPT: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_str!("ui/app.js"),
};
const STYLE: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_str!("ui/app.css"),
};

const ICON: Asset = Asset {
    content_type: "image/svg+xml",
    body: include_str!("ui/icon.svg"),
};

/// The page's file at `path`, if it is one.
pub(crate) fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/ui/app.js" => Some(SCRIPT),
        "/ui/app.css" => Some(STYLE),
        "/ui/icon.svg" => Some(ICON),
        _ => None,
    }
}
