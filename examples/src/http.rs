//! The example daemons' small HTTP server (health checks, metrics): hyper's HTTP/1.1 on a
//! one-thread tokio runtime of its own, so the daemons themselves stay synchronous.
//!
//! Every connection is a task: an idle or slow client costs a few kilobytes, never the other
//! clients' answers. A client that has not sent its request headers within
//! [`HEADER_TIMEOUT`] is disconnected, no connection lives longer than [`CONNECTION_LIFETIME`],
//! and beyond [`MAX_CONNECTIONS`] open connections new ones are closed at once.
//!
//! ```no_run
//! use podnet_examples::http::{Response, serve};
//! use std::sync::{Arc, atomic::AtomicBool};
//! let stop = Arc::new(AtomicBool::new(false));
//! let addr = serve(
//!     "127.0.0.1:0".parse().unwrap(),
//!     Arc::new(|req: &podnet_examples::http::Request| match req.path.as_str() {
//!         "/healthz" => Response::text(200, "ok"),
//!         _ => Response::not_found(),
//!     }),
//!     stop,
//! )?;
//! println!("listening on {addr}");
//! # Ok::<(), std::io::Error>(())
//! ```

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// How long a client may take to send its request headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection stays open, keep-alive included.
pub const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Open connections beyond which new ones are closed at once.
pub const MAX_CONNECTIONS: usize = 512;
/// How often the accept loop looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(200);

/// What a handler sees of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
}

/// A complete answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Header fields, in order.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: String,
}

impl Response {
    /// `text/plain; charset=utf-8` with `X-Content-Type-Options: nosniff`, as Go's net/http
    /// answers plain text.
    pub fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", "text/plain; charset=utf-8".into()),
                ("X-Content-Type-Options", "nosniff".into()),
            ],
            body: body.into(),
        }
    }

    /// `application/json` with `X-Content-Type-Options: nosniff` (kube-proxy's health answers).
    pub fn json(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            headers: vec![
                ("Content-Type", "application/json".into()),
                ("X-Content-Type-Options", "nosniff".into()),
            ],
            body: body.into(),
        }
    }

    /// Go's `http.NotFound`: 404 `404 page not found`.
    pub fn not_found() -> Response {
        Response::text(404, "404 page not found\n")
    }

    fn into_hyper(self) -> hyper::Response<Full<Bytes>> {
        let status = hyper::StatusCode::from_u16(self.status)
            .unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
        let mut b = hyper::Response::builder().status(status);
        for (k, v) in &self.headers {
            b = b.header(*k, v.as_str());
        }
        b.body(Full::new(Bytes::from(self.body)))
            .unwrap_or_else(|_| {
                let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"bad response\n")));
                *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
                r
            })
    }
}

/// Answers requests; called on the server's thread, so it should be quick.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Listens on `addr` (bound before this returns, so a taken port is an error here) and serves
/// `handler` on a thread of its own until `stop` is set. Returns the address bound (useful with
/// port 0).
pub fn serve(
    addr: SocketAddr,
    handler: Handler,
    stop: Arc<AtomicBool>,
) -> std::io::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let local = listener.local_addr()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    std::thread::Builder::new()
        .name(format!("http {local}"))
        .spawn(move || rt.block_on(accept_loop(listener, handler, stop)))?;
    Ok(local)
}

async fn accept_loop(listener: std::net::TcpListener, handler: Handler, stop: Arc<AtomicBool>) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("HTTP listener: {e}");
            return;
        }
    };
    let open = Arc::new(AtomicUsize::new(0));
    while !stop.load(Ordering::Relaxed) {
        let stream = match tokio::time::timeout(STOP_POLL, listener.accept()).await {
            Err(_) => continue,
            Ok(Ok((stream, _))) => stream,
            Ok(Err(e)) => {
                // Out of file descriptors, say: wait instead of spinning.
                tracing::warn!("HTTP accept: {e}");
                tokio::time::sleep(STOP_POLL).await;
                continue;
            }
        };
        if open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
            drop(stream);
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let (handler, open) = (handler.clone(), open.clone());
        tokio::spawn(async move {
            let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let r = Request {
                    method: req.method().as_str().to_owned(),
                    path: req.uri().path().to_owned(),
                };
                let resp = handler(&r).into_hyper();
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_LIFETIME, conn).await;
            open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}

/// An HTTP/1.0 GET of `path` from `addr` with a 5 s timeout: the status code and the body.
/// For tests and for podnet-cluster's readiness checks (from inside a namespace).
pub fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {text:?}")))?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}
