//! The pages' static files, embedded in the binary (nothing is fetched from
//! elsewhere): uPlot, vendored from the npm registry with its licence
//! (`assets/uplot/`), and the script that turns the SVG charts into
//! interactive ones (ADR 0021).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `(name, body, content type)`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "uplot.min.js",
        include_str!("../assets/uplot/uPlot.iife.min.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "uplot.min.css",
        include_str!("../assets/uplot/uPlot.min.css"),
        "text/css; charset=utf-8",
    ),
    (
        "uplot-LICENSE.txt",
        include_str!("../assets/uplot/LICENSE"),
        "text/plain; charset=utf-8",
    ),
    (
        "charts.js",
        include_str!("../assets/charts.js"),
        "text/javascript; charset=utf-8",
    ),
];

/// What the pages' `<head>` loads: uPlot and the chart script, deferred.
pub const HEAD: &str = "<link rel=\"stylesheet\" href=\"/assets/uplot.min.css\"><script defer src=\"/assets/uplot.min.js\"></script><script defer src=\"/assets/charts.js\"></script>";

/// `GET /assets/{name}`: cached for a day (the names carry no version).
pub async fn asset(Path(name): Path<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, body, mime)) => (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, *mime),
                (header::CACHE_CONTROL, "public, max-age=86400"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *body,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such asset").into_response(),
    }
}
