//! The OpenAPI document and a self-contained HTML page rendered from it (no CDN needed).

use axum::Json;
use axum::extract::State;
use axum::response::Html;
use std::sync::Arc;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Renders the operations of an OpenAPI document as a plain HTML page.
pub fn render(doc: &serde_json::Value) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>photo-api</title>\
         <style>body{font:15px system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}\
         code{background:#f3f3f3;padding:0 .3em}h3{margin-bottom:.2em}.m{font-weight:bold;text-transform:uppercase}\
         ul{margin-top:.2em}</style></head><body><h1>photo-api</h1>\
         <p>The machine-readable document is at <a href=\"/openapi.json\"><code>/openapi.json</code></a>. \
         Authenticate with <code>Authorization: Bearer &lt;API key&gt;</code>. Errors are \
         <code>application/problem+json</code> with a stable <code>code</code>.</p>",
    );
    if let Some(paths) = doc.get("paths").and_then(|p| p.as_object()) {
        for (path, ops) in paths {
            let Some(ops) = ops.as_object() else { continue };
            for (method, op) in ops {
                let summary = op
                    .get("summary")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default();
                let desc = op
                    .get("description")
                    .and_then(|s| s.as_str())
                    .unwrap_or_default();
                out.push_str(&format!(
                    "<h3><span class=\"m\">{}</span> <code>{}</code></h3><p>{} {}</p><ul>",
                    esc(method),
                    esc(path),
                    esc(summary),
                    esc(desc)
                ));
                if let Some(rs) = op.get("responses").and_then(|r| r.as_object()) {
                    for (code, r) in rs {
                        let d = r
                            .get("description")
                            .and_then(|s| s.as_str())
                            .unwrap_or_default();
                        out.push_str(&format!("<li><code>{}</code> {}</li>", esc(code), esc(d)));
                    }
                }
                out.push_str("</ul>");
            }
        }
    }
    out.push_str("</body></html>");
    out
}

/// The OpenAPI document.
pub async fn openapi(State(doc): State<Arc<serde_json::Value>>) -> Json<serde_json::Value> {
    Json((*doc).clone())
}

/// The HTML docs page.
pub async fn page(State(doc): State<Arc<serde_json::Value>>) -> Html<String> {
    Html(render(&doc))
}
