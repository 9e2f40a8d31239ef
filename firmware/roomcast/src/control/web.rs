//! The box's web page, built into the binary: no file system, no CDN, no
//! external font or script. hls.js is the version pinned in
//! `web/package-lock.json`, copied into `$OUT_DIR` by `build.rs`.

/// A static file served by the HTTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Asset {
    pub content_type: &'static str,
    pub body: &'static [u8],
}

const INDEX: Asset = Asset {
    content_type: "text/html; charset=utf-8",
    body: include_bytes!("../../web/index.html"),
};
const APP_JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!("../../web/app.js"),
};
const STYLE_CSS: Asset = Asset {
    content_type: "text/css; charset=utf-8",
    body: include_bytes!("../../web/style.css"),
};
const HLS_JS: Asset = Asset {
    content_type: "text/javascript; charset=utf-8",
    body: include_bytes!(concat!(env!("OUT_DIR"), "/hls.min.js")),
};

/// The asset served at `path` (the request path without its query string),
/// or `None` when there is none.
pub fn asset(path: &str) -> Option<Asset> {
    match path {
        "/" | "/index.html" => Some(INDEX),
        "/app.js" => Some(APP_JS),
        "/style.css" => Some(STYLE_CSS),
        "/hls.min.js" => Some(HLS_JS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(path: &str) -> String {
        String::from_utf8_lossy(asset(path).unwrap().body).into_owned()
    }

    #[test]
    fn every_path_has_its_content_type() {
        for (path, ty) in [
            ("/", "text/html"),
            ("/index.html", "text/html"),
            ("/app.js", "text/javascript"),
            ("/style.css", "text/css"),
            ("/hls.min.js", "text/javascript"),
        ] {
            let a = asset(path).unwrap_or_else(|| panic!("{path} not found"));
            assert!(a.content_type.starts_with(ty), "{path}: {}", a.content_type);
            assert!(!a.body.is_empty(), "{path} is empty");
        }
        assert_eq!(asset("/"), asset("/index.html"));
    }

    #[test]
    fn unknown_paths_are_not_found() {
        for path in [
            "",
            "/index.htm",
            "/app.js/",
            "/../Cargo.toml",
            "/hls/index.m3u8",
            "/api/status",
            "/web/app.js",
        ] {
            assert_eq!(asset(path), None, "{path}");
        }
    }

    #[test]
    fn hls_js_is_embedded() {
        let js = text("/hls.min.js");
        assert!(js.len() > 100_000, "hls.min.js is only {} bytes", js.len());
        assert!(js.contains("Hls"), "hls.min.js does not look like hls.js");
    }

    #[test]
    fn page_uses_only_its_own_assets() {
        let html = text("/");
        assert!(html.contains("<title>roomcast</title>"));
        for src in ["/hls.min.js", "/app.js", "/style.css"] {
            assert!(html.contains(src), "index.html does not load {src}");
        }
        for asset in ["/", "/app.js", "/style.css"] {
            let body = text(asset);
            assert!(
                !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
                "{asset} loads something from outside the box"
            );
        }
    }
}
