//! A tiny HTTP server for `/metrics` and `/healthz`.

use super::Metrics;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub(super) fn serve(
    addr: SocketAddr,
    metrics: Arc<Mutex<Metrics>>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut s, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            };
            let _ = s.set_nonblocking(false);
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut buf = [0u8; 1024];
            let n = s.read(&mut buf).unwrap_or(0);
            let req = String::from_utf8_lossy(&buf[..n]);
            let path = req.split_whitespace().nth(1).unwrap_or("/");
            let m = metrics.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let (status, body) = match path {
                "/metrics" => ("200 OK", m.render()),
                "/healthz" if m.healthy() => ("200 OK", "ok\n".to_owned()),
                "/healthz" => (
                    "503 Service Unavailable",
                    "no successful sync yet\n".to_owned(),
                ),
                _ => ("404 Not Found", "not found\n".to_owned()),
            };
            let _ = write!(
                s,
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    Ok(())
}
