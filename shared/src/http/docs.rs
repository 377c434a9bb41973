//! `/docs`: Swagger UI over `/openapi.json`, its assets vendored into the binary at build time.

use std::sync::{Arc, LazyLock};

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use utoipa_swagger_ui::Config;

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

/// Relative to `/docs`, so the page also works behind a path prefix such as an API stage.
/// The token lives in the page only (`persistAuthorization` off), and the validator badge,
/// which would call a public service, is off.
static CONFIG: LazyLock<Arc<Config<'static>>> = LazyLock::new(|| {
    Arc::new(
        Config::new(["openapi.json"])
            .validator_url("none")
            .persist_authorization(false)
            .display_request_duration(true),
    )
});

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

async fn asset(Path(file): Path<String>) -> Response {
    // The dist's own index.html would resolve `openapi.json` against `/docs/`; `/docs` is the page.
    if file == "index.html" {
        return ApiError::NoRoute.into_response();
    }
    match utoipa_swagger_ui::serve(&file, CONFIG.clone()) {
        Ok(Some(found)) => {
            let cache = if file == "swagger-initializer.js" {
                NO_CACHE
            } else {
                SWAGGER_ASSET_CACHE
            };
            let content_type = HeaderValue::from_str(&found.content_type)
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, content_type),
                    (header::CACHE_CONTROL, HeaderValue::from_static(cache)),
                    (
                        header::X_CONTENT_TYPE_OPTIONS,
                        HeaderValue::from_static("nosniff"),
                    ),
                ],
                found.bytes,
            )
                .into_response()
        }
        Ok(None) => ApiError::NoRoute.into_response(),
        Err(e) => {
            tracing::error!(error = %e, file, "swagger ui asset failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
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
    use axum::http::Request;
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
