//! `/docs`: Swagger UI over `/openapi.json`, its assets vendored into the binary at build time.

use std::sync::LazyLock;

use axum::Router;
use axum::extract::Path;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use super::problem::ApiError;
use super::ui::{NO_CACHE, content_hash, static_response};

const DOCS_HTML: &str = include_str!("ui/docs.html");

/// Swagger UI sets inline styles and shows SVG data URIs; scripts still come only from here.
const DOCS_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
    frame-ancestors 'none'";

/// The vendored files change only with the crate version; a day of caching is safe enough.
const SWAGGER_ASSET_CACHE: &str = "public, max-age=86400";

static DOCS_ETAG: LazyLock<String> =
    LazyLock::new(|| format!("\"{}\"", content_hash(DOCS_HTML.as_bytes())));

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// The files the page loads: Swagger UI's own (extracted by `build.rs` from the vendored
/// release), and the start-up script, ours.
static ASSETS: LazyLock<Vec<DocsAsset>> = LazyLock::new(|| {
    [
        (
            "swagger-ui.css",
            include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui.css")).as_slice(),
            CSS,
        ),
        (
            "index.css",
            include_bytes!(concat!(env!("OUT_DIR"), "/index.css")).as_slice(),
            CSS,
        ),
        (
            "swagger-ui-bundle.js",
            include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-bundle.js")).as_slice(),
            JS,
        ),
        (
            "swagger-ui-standalone-preset.js",
            include_bytes!(concat!(env!("OUT_DIR"), "/swagger-ui-standalone-preset.js")).as_slice(),
            JS,
        ),
        (
            "swagger-initializer.js",
            include_bytes!("ui/swagger-initializer.js").as_slice(),
            JS,
        ),
    ]
    .into_iter()
    .map(|(name, body, content_type)| DocsAsset {
        name,
        body,
        content_type,
        etag: format!("\"{}\"", content_hash(body)),
    })
    .collect()
});

struct DocsAsset {
    name: &'static str,
    body: &'static [u8],
    content_type: &'static str,
    etag: String,
}

/// Swagger UI; "Authorize" takes the bearer token, "Try it out" calls this server.
#[utoipa::path(get, path = "/docs", tag = "system", operation_id = "docs", security(()),
    responses((status = 200, description = "Swagger UI (HTML)", content_type = "text/html")))]
pub async fn page(headers: HeaderMap) -> Response {
    static_response(
        &headers,
        DOCS_HTML.as_bytes(),
        "text/html; charset=utf-8",
        &DOCS_ETAG,
        NO_CACHE,
        Some(DOCS_CSP),
    )
}

async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    match ASSETS.iter().find(|a| a.name == file) {
        Some(a) => {
            let cache = if a.name == "swagger-initializer.js" {
                NO_CACHE
            } else {
                SWAGGER_ASSET_CACHE
            };
            static_response(&headers, a.body, a.content_type, &a.etag, cache, None)
        }
        None => ApiError::NoRoute.into_response(),
    }
}

/// `/docs` and its assets under `/docs/`; public, so a reader can authorize inside the page.
pub fn routes() -> Router {
    Router::new()
        .route("/docs", get(page))
        .route("/docs/", get(|| async { Redirect::permanent("../docs") }))
        .route("/docs/{file}", get(asset))
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::{Request, StatusCode, header};
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;

    async fn get(path: &str) -> (StatusCode, HeaderMap, String) {
        let res = routes()
            .oneshot(Request::get(path).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = res.status();
        let headers = res.headers().clone();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, headers, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn serves_swagger_ui_from_the_binary() {
        let (status, headers, html) = get("/docs").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert!(headers.contains_key(header::CONTENT_SECURITY_POLICY));
        for asset in [
            "swagger-ui.css",
            "swagger-ui-bundle.js",
            "swagger-ui-standalone-preset.js",
        ] {
            assert!(html.contains(&format!("docs/{asset}")), "{asset}");
            let (status, _, body) = get(&format!("/docs/{asset}")).await;
            assert_eq!(status, StatusCode::OK, "{asset}");
            assert!(body.len() > 1000, "{asset}");
        }
        let (_, headers, init) = get("/docs/swagger-initializer.js").await;
        assert_eq!(headers[header::CACHE_CONTROL], NO_CACHE);
        assert!(init.contains(r#""url": "openapi.json""#), "{init}");
        assert!(init.contains(r#""validatorUrl": "none""#), "{init}");
        assert!(init.contains(r#""persistAuthorization": false"#), "{init}");
    }

    #[tokio::test]
    async fn unknown_files_are_problems_and_the_slash_redirects() {
        for path in ["/docs/nope.js", "/docs/index.html"] {
            let (status, headers, _) = get(path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
        }
        let (status, headers, _) = get("/docs/").await;
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(headers[header::LOCATION], "../docs");
    }
}
