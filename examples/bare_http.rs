//! Reference web server for `sipp/http-bench.sh`: the least an axum 0.8 server on the same
//! runtime as holdline (tokio multi-thread, all cores, HTTP/1) can do to answer a page.
//!
//! ```text
//! cargo run --release --example bare_http -- [ADDR=127.0.0.1:18090] [BYTES=2048]
//! ```
//!
//! `GET /` (or any path) answers `200 text/html` with a fixed page of BYTES bytes built once
//! at start, so a request costs only accept/parse/route/write. Issue 8's web target is
//! holdline's `/c/N` and `/api/contacts/N` at ≥ 0.8× this page's requests/s on the same box;
//! BYTES lets the script match the size of the page it compares against, so the ratio is about
//! the work per request, not the bytes on the wire.
#![allow(
    clippy::print_stdout,
    reason = "a benchmark tool reports its address on stdout"
)]

use axum::Router;
use axum::response::Html;
use axum::routing::get;

fn page(bytes: usize) -> String {
    let head = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
                <title>bare</title></head><body><p>";
    let tail = "</p></body></html>";
    let fill = bytes.saturating_sub(head.len() + tail.len());
    format!("{head}{}{tail}", "x".repeat(fill))
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18090".to_owned());
    let bytes: usize = args.next().map_or(Ok(2048), |b| b.parse())?;
    let body: &'static str = Box::leak(page(bytes).into_boxed_str());
    // Same runtime shape as the holdline binary (src/main.rs): multi-thread, default workers.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/", get(move || async move { Html(body) }))
            .fallback(move || async move { Html(body) });
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "listening on http://{} ({} byte page)",
            listener.local_addr()?,
            body.len()
        );
        axum::serve(listener, app).await?;
        anyhow::Ok(())
    })
}
