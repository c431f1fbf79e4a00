//! The web UI's files: the copy built into the binary (so it runs from any
//! folder, and after `cargo install`), or a folder (`static_dir`,
//! `--static-dir`). Either way compressed when the browser accepts it and
//! revalidated by ETag; the vendored libraries, whose names carry their
//! versions, are cached for a year.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use rust_embed::RustEmbed;

/// `static/`, read from the source tree in debug builds and compiled in for
/// release builds.
#[derive(RustEmbed)]
#[folder = "static/"]
struct Embedded;

/// How long a file may be kept without asking again.
pub fn cache_control(path: &str) -> &'static str {
    if path.starts_with("vendor/") {
        "public, max-age=31536000, immutable"
    } else {
        // Asked again every time; an unchanged file costs a 304.
        "no-cache"
    }
}

/// `GET /{path}` from the built-in copy.
pub async fn embedded(req: HttpRequest) -> HttpResponse {
    let path = req.match_info().query("path").trim_start_matches('/');
    let path = if path.is_empty() { "index.html" } else { path };
    let Some(file) = Embedded::get(path) else {
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!("no such file: /{path}"));
    };
    let etag = format!(
        "\"{}\"",
        file.metadata
            .sha256_hash()
            .iter()
            .take(12)
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let unchanged = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag));
    let mut response = if unchanged {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    response.insert_header((header::ETAG, etag));
    if unchanged {
        return response.finish();
    }
    // Compiled in (release builds): the static bytes, not a copy.
    let body = match file.data {
        std::borrow::Cow::Borrowed(bytes) => bytes::Bytes::from_static(bytes),
        std::borrow::Cow::Owned(bytes) => bytes::Bytes::from(bytes),
    };
    response.content_type(file.metadata.mimetype()).body(body)
}

/// The routes of the UI from the built-in copy.
pub fn embedded_routes(config: &mut web::ServiceConfig) {
    config.route("/{path:.*}", web::get().to(embedded));
}
