//! The dashboard at `/`: one HTML page, one script and one stylesheet, compiled into the binary.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::problem::ApiError;

const INDEX_HTML: &str = include_str!("ui/index.html");
const APP_JS: &[u8] = include_bytes!("ui/app.js");
const APP_CSS: &[u8] = include_bytes!("ui/app.css");

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// Pages may only load what this binary serves: no CDN, no inline script.
const DASHBOARD_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// Revalidate every time: the page names the current asset versions.
pub(crate) const NO_CACHE: &str = "no-cache";
/// Asset URLs carry a content hash, so a cached copy can never be stale.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";

/// FNV-1a: a stable content hash for ETags and cache-busting, computed once per asset.
pub(crate) fn content_hash(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("{hash:016x}")
}

struct Asset {
    body: &'static [u8],
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static [u8], content_type: &'static str) -> Self {
        Self {
            etag: format!("\"{}\"", content_hash(body)),
            body,
            content_type,
        }
    }
}

static JS_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_JS, JS));
static CSS_ASSET: LazyLock<Asset> = LazyLock::new(|| Asset::new(APP_CSS, CSS));

/// The page with each asset URL pinned to its content hash.
static INDEX: LazyLock<Asset> = LazyLock::new(|| {
    let html = INDEX_HTML
        .replace("{{js_version}}", &content_hash(APP_JS))
        .replace("{{css_version}}", &content_hash(APP_CSS));
    Asset::new(Box::leak(html.into_boxed_str()).as_bytes(), HTML)
});

/// A static response with validators: `If-None-Match` on the current ETag gets a bodiless 304.
pub(crate) fn static_response(
    request: &HeaderMap,
    body: &'static [u8],
    content_type: &'static str,
    etag: &str,
    cache_control: &'static str,
    csp: Option<&'static str>,
) -> Response {
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
            body,
        )
            .into_response()
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(cache_control),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if let Some(csp) = csp {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(csp),
        );
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

fn serve(request: &HeaderMap, asset: &Asset, cache_control: &'static str) -> Response {
    static_response(
        request,
        asset.body,
        asset.content_type,
        &asset.etag,
        cache_control,
        (asset.content_type == HTML).then_some(DASHBOARD_CSP),
    )
}

/// The dashboard page; it asks for the API token itself, so it needs none.
#[utoipa::path(get, path = "/", tag = "system", operation_id = "dashboard", security(()),
    responses((status = 200, description = "The dashboard (HTML)", content_type = "text/html")))]
pub async fn index(headers: HeaderMap) -> Response {
    serve(&headers, &INDEX, NO_CACHE)
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match file.as_str() {
        "app.js" => serve(&headers, &JS_ASSET, IMMUTABLE),
        "app.css" => serve(&headers, &CSS_ASSET, IMMUTABLE),
        _ => ApiError::NoRoute.into_response(),
    }
}

/// `/` and its assets under `/ui/`; public, like the documentation.
pub fn routes() -> Router {
    Router::new()
        .route("/", get(index))
        .route("/ui/{file}", get(asset))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str, if_none_match: Option<&str>) -> Response {
        let mut req = Request::get(path);
        if let Some(tag) = if_none_match {
            req = req.header(header::IF_NONE_MATCH, tag);
        }
        routes()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn serves_each_file_with_its_type_and_caching() {
        let page = get("/", None).await;
        assert_eq!(page.status(), StatusCode::OK);
        assert_eq!(page.headers()[header::CONTENT_TYPE], HTML);
        assert_eq!(page.headers()[header::CACHE_CONTROL], NO_CACHE);
        assert!(
            page.headers()[header::CONTENT_SECURITY_POLICY]
                .to_str()
                .unwrap()
                .contains("script-src 'self'")
        );
        for (path, content_type) in [("/ui/app.js", JS), ("/ui/app.css", CSS)] {
            let res = get(&format!("{path}?v=1"), None).await;
            assert_eq!(res.status(), StatusCode::OK, "{path}");
            assert_eq!(res.headers()[header::CONTENT_TYPE], content_type);
            assert_eq!(res.headers()[header::CACHE_CONTROL], IMMUTABLE);
            assert_eq!(res.headers()[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let missing = get("/ui/other.js", None).await;
        assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_current_etag_gets_304() {
        let first = get("/", None).await;
        let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
        let again = get("/", Some(&etag)).await;
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(get("/", Some("\"stale\"")).await.status(), StatusCode::OK);
    }

    #[test]
    fn the_page_pins_asset_versions() {
        let html = std::str::from_utf8(INDEX.body).unwrap();
        assert!(html.contains(&format!("ui/app.js?v={}", content_hash(APP_JS))));
        assert!(html.contains(&format!("ui/app.css?v={}", content_hash(APP_CSS))));
        assert!(!html.contains("{{"));
    }

    #[test]
    fn assets_reference_nothing_remote() {
        // The SVG namespace is a name, not a fetch.
        let js = std::str::from_utf8(APP_JS)
            .unwrap()
            .replace("http://www.w3.org/2000/svg", "");
        for text in [
            INDEX_HTML,
            js.as_str(),
            std::str::from_utf8(APP_CSS).unwrap(),
        ] {
            assert!(!text.contains("http://") && !text.contains("https://"));
            assert!(!text.contains("//cdn"));
        }
    }
}
