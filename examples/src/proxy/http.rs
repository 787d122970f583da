//! kube-proxy's HTTP endpoints, answered as upstream answers them: the healthz address
//! (`--healthz-bind-address`, default `0.0.0.0:10256`) serves `/healthz` and `/livez` only;
//! the metrics address (`--metrics-bind-address`, default `127.0.0.1:10249`) serves
//! `/metrics`, `/healthz` (a plain `ok`) and `/proxyMode`. Anything else is 404. When both
//! addresses are the same, one server answers all of it (the proxier's `/healthz`).

use super::health::ProxierHealth;
use super::metrics::CONTENT_TYPE;
use super::{HttpAddresses, Metrics};
use crate::http::{Handler, Request, Response, serve};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

fn metrics_routes(req: &Request, mode: &'static str, metrics: &Mutex<Metrics>) -> Option<Response> {
    match req.path.as_str() {
        "/metrics" => {
            // The health counters are registered in the same registry (one `# EOF`).
            let body = metrics.lock().unwrap_or_else(|p| p.into_inner()).render();
            let mut r = Response::text(200, body);
            r.headers[0].1 = CONTENT_TYPE.into();
            Some(r)
        }
        "/healthz" => Some(Response::text(200, "ok")),
        "/proxyMode" => Some(Response::text(200, mode)),
        _ => None,
    }
}

fn healthz_routes(req: &Request, health: &ProxierHealth) -> Option<Response> {
    match req.path.as_str() {
        "/healthz" => Some(health.healthz()),
        "/livez" => Some(health.livez()),
        _ => None,
    }
}

/// Starts the servers `addrs` asks for; an address that cannot be bound is an error naming it.
pub(super) fn start(
    addrs: &HttpAddresses,
    mode: &'static str,
    metrics: Arc<Mutex<Metrics>>,
    health: Arc<ProxierHealth>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let same = addrs.metrics.is_some() && addrs.metrics == addrs.healthz;
    if let Some(addr) = addrs.healthz {
        let (m, h) = (metrics.clone(), health.clone());
        let handler: Handler = Arc::new(move |req: &Request| {
            healthz_routes(req, &h)
                .or_else(|| same.then(|| metrics_routes(req, mode, &m)).flatten())
                .unwrap_or_else(Response::not_found)
        });
        serve(addr, handler, stop.clone())
            .map_err(|e| format!("--healthz-bind-address {addr}: {e}"))?;
    }
    if let Some(addr) = addrs.metrics.filter(|_| !same) {
        let handler: Handler = Arc::new(move |req: &Request| {
            metrics_routes(req, mode, &metrics).unwrap_or_else(Response::not_found)
        });
        serve(addr, handler, stop).map_err(|e| format!("--metrics-bind-address {addr}: {e}"))?;
    }
    Ok(())
}
