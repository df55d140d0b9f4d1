//! The machine's ceiling for the benchmark: an axum handler that reads a small JSON body and
//! returns a fixed small JSON, with the same runtime and HTTP stack as Ferry.
//! Usage: bare_axum ADDR

use axum::Router;
use axum::routing::post;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3900".into());
    let app = Router::new().route(
        "/presign-b2-upload",
        post(|_body: axum::body::Bytes| async {
            (
                [("content-type", "application/json")],
                r#"{"success":true,"presignedUrl":"http://x/y","objectKey":"k","publicFileUrl":"http://x/k"}"#,
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    axum::serve(listener, app).await.expect("serve");
}
