//! A test Kubernetes API server: a **fixture**, not a Kubernetes.
//!
//! No kube-apiserver can be installed on the machines podnet is tested on, so the tests of the
//! Kubernetes client layer, flanneld's `--kube-subnet-mgr` and kube-proxy's API mode run
//! against this server. It implements the list/watch protocol of the Kubernetes API
//! conventions for the resources podnet reads, with objects held as JSON in memory:
//!
//! | resource | path | verbs |
//! |---|---|---|
//! | core/v1 Nodes | `/api/v1/nodes[/NAME[/status]]` | list, watch, get, create, update, patch, delete |
//! | core/v1 Services | `/api/v1[/namespaces/NS]/services[/NAME]` | the same |
//! | discovery.k8s.io/v1 EndpointSlices | `/apis/discovery.k8s.io/v1[/namespaces/NS]/endpointslices[/NAME]` | the same |
//! | networking.k8s.io/v1 ServiceCIDRs | `/apis/networking.k8s.io/v1/servicecidrs[/NAME]` | the same |
//!
//! What it does as the real API server does:
//! - one cluster-wide `resourceVersion` counter; every object and every list carries one, and
//!   an update that names a stale `metadata.resourceVersion` gets `409 Conflict`;
//! - `?watch=1&resourceVersion=N` streams `ADDED`/`MODIFIED`/`DELETED` events after N (without
//!   N, or with `0`, it first sends the current objects as `ADDED`), `BOOKMARK` events when the
//!   client asks with `allowWatchBookmarks=true` (every [`ApiServerOptions::bookmark_interval`]
//!   and on [`ApiServer::send_bookmarks`]), and `timeoutSeconds`;
//! - a watch from a resourceVersion older than the compacted history gets an `ERROR` event
//!   holding a `Status` with code 410 (reason `Expired`), and a list with
//!   `resourceVersionMatch=Exact` or a `continue` token from before the compaction gets a
//!   `410 Gone`;
//! - chunked lists: `limit` and `continue` page through a consistent snapshot, with
//!   `remainingItemCount`;
//! - `fieldSelector=metadata.name=X` (and `metadata.namespace=X`), and equality
//!   `labelSelector`s (`a=b,c`);
//! - PATCH as kubectl and client-go send it: `application/merge-patch+json` (RFC 7386),
//!   `application/strategic-merge-patch+json` (a merge patch whose Node conditions and
//!   addresses, taints and Service ports are merged by their keys as the API server does;
//!   other lists are replaced whole, `$patch` directives are refused) and `application/json-patch+json` (RFC 6902:
//!   add, remove, replace, test, move, copy); the `/status` subresource keeps the stored
//!   `spec` (metadata and status change there, which is where flannel patches its Node
//!   annotations), the main resource keeps the stored `status`;
//! - a bearer token, when [`ApiServerOptions::token`] is set (`401` otherwise), and HTTPS
//!   with a given certificate ([`ApiServerOptions::tls`]).
//!
//! Test controls that a real server has no API for: [`ApiServer::compact`] (drop the history),
//! [`ApiServer::expire_watches`] (running watches get the 410 `ERROR` event, as a watcher that
//! fell behind the watch cache does), [`ApiServer::drop_watches`] (close every watch
//! connection), and [`ApiServer::requests`] (what clients asked). The same controls are
//! endpoints under `/podnet-test/` for the `podnet-test-apiserver` process: POST `compact`,
//! `expire-watches`, `drop-watches`, `bookmark`; GET `requests`.
//!
//! Not there: discovery beyond `/api`, `/apis` and `/version`, server-side apply, admission,
//! validation of objects against their schema, client certificates.
//!
//! ```no_run
//! use podnet_testsupport::kube_api::{ApiServer, ApiServerOptions};
//! use serde_json::json;
//!
//! let server = ApiServer::start(ApiServerOptions::default()).unwrap();
//! server
//!     .create(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"},
//!                    "spec": {"podCIDR": "10.244.1.0/24"}}))
//!     .unwrap();
//! println!("kubectl --server {} get nodes", server.url());
//! ```

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body, Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

mod patch;
mod query;
mod store;
mod watch;

use patch::apply_patch;
pub use patch::{json_patch, merge_patch, strategic_merge};
use query::{Filter, Route, parse_filter, parse_query, route};
use watch::watch;

/// A resource type the server knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// core/v1 Node (cluster-scoped).
    Node,
    /// core/v1 Service.
    Service,
    /// discovery.k8s.io/v1 EndpointSlice.
    EndpointSlice,
    /// networking.k8s.io/v1 ServiceCIDR (cluster-scoped).
    ServiceCidr,
}

impl Kind {
    const ALL: [Kind; 4] = [
        Kind::Node,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::ServiceCidr,
    ];

    /// The `kind` field.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::ServiceCidr => "ServiceCIDR",
        }
    }

    /// The `apiVersion` field.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Node | Kind::Service => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::ServiceCidr => "networking.k8s.io/v1",
        }
    }

    /// The plural name in URLs.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Service => "services",
            Kind::EndpointSlice => "endpointslices",
            Kind::ServiceCidr => "servicecidrs",
        }
    }

    /// Whether objects live in a namespace.
    pub fn namespaced(self) -> bool {
        matches!(self, Kind::Service | Kind::EndpointSlice)
    }

    /// The store's key of object `name` in `namespace` (ignored for cluster-scoped kinds).
    fn key(self, namespace: &str, name: &str) -> Key {
        let namespace = if self.namespaced() { namespace } else { "" };
        (namespace.to_string(), name.to_string())
    }

    fn group(self) -> &'static str {
        match self {
            Kind::Node | Kind::Service => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::ServiceCidr => "networking.k8s.io",
        }
    }

    /// The kind named by an object's `apiVersion` and `kind`.
    pub fn of(api_version: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.api_version() == api_version && k.name() == kind)
    }
}

/// How the server behaves.
#[derive(Debug, Clone)]
pub struct ApiServerOptions {
    /// Where to listen; port 0 picks one.
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// How often a watch that allows bookmarks gets one (the real server: about a minute).
    pub bookmark_interval: Option<Duration>,
    /// Serve HTTPS with this certificate instead of HTTP.
    pub tls: Option<ServerTls>,
}

impl Default for ApiServerOptions {
    fn default() -> Self {
        ApiServerOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: None,
            bookmark_interval: None,
            tls: None,
        }
    }
}

/// The server's certificate for HTTPS, PEM.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The certificate chain (`--tls-cert-file`); it must name the address clients use.
    pub cert_pem: String,
    /// Its private key (`--tls-private-key-file`).
    pub key_pem: String,
    /// The CA that signed it, written into [`ApiServer::kubeconfig`] as
    /// `certificate-authority-data`.
    pub ca_pem: String,
}

fn tls_acceptor(tls: &ServerTls) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    };
    let certs = CertificateDer::pem_slice_iter(tls.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", &e))?;
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes()).map_err(|e| bad("key", &e))?;
    // ring, the provider the rest of the tree uses (tonic's tls-ring, kube's ring); rustls
    // 0.23.48 deprecates its constructor only for lacking post-quantum key exchange, which a
    // test fixture does not need.
    #[allow(deprecated)]
    let provider = rustls::crypto::ring::default_provider();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| bad("TLS versions", &e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad("certificate and key", &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Standard base64 with padding (kubeconfig's `*-data` fields).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Why a control call failed: the HTTP status and `Status` the API would answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// The `Status` reason (`NotFound`, `Conflict`, `Gone`, ...).
    pub reason: String,
    /// The message.
    pub message: String,
}

impl ApiError {
    fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn status(&self) -> Value {
        json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason,
            "code": self.code,
        })
    }
}

type Key = (String, String);

#[derive(Debug, Clone)]
struct Event {
    rv: u64,
    kind: Kind,
    etype: &'static str,
    object: Value,
}

#[derive(Debug, Default)]
struct State {
    rv: u64,
    compacted: u64,
    uid: u64,
    objects: BTreeMap<Kind, BTreeMap<Key, Value>>,
    history: Vec<Event>,
    snapshots: HashMap<u64, (u64, Vec<Value>)>,
    next_snapshot: u64,
    drop_gen: u64,
    expire_gen: u64,
    bookmark_gen: u64,
    requests: Vec<String>,
}

struct Shared {
    /// Watches that are streaming (past their start, so they see every control).
    active_watches: std::sync::atomic::AtomicUsize,
    state: Mutex<State>,
    bump: tokio::sync::watch::Sender<u64>,
    opts: ApiServerOptions,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wake(&self) {
        self.bump.send_modify(|n| *n += 1);
    }
}

/// A running test API server; stops when dropped.
pub struct ApiServer {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for ApiServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiServer")
            .field("addr", &self.addr)
            .finish()
    }
}

fn meta(obj: &Value, field: &str) -> String {
    obj.pointer(&format!("/metadata/{field}"))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn set_meta(obj: &mut Value, field: &str, value: Value) {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"][field] = value;
}

/// A response body fed from a channel: the watch stream.
struct ChannelBody(mpsc::Receiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx).map(|o| o.map(|b| Ok(Frame::data(b))))
    }
}

type BoxBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

fn json_response(code: u16, v: &Value) -> Response<BoxBody> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(Bytes::from(body)).boxed_unsync())
        .expect("a valid response")
}

fn error_response(e: &ApiError) -> Response<BoxBody> {
    json_response(e.code, &e.status())
}

fn gone(rv: u64, compacted: u64) -> ApiError {
    ApiError::new(
        410,
        "Expired",
        format!("too old resource version: {rv} ({})", compacted + 1),
    )
}

impl Shared {
    fn list(
        &self,
        kind: Kind,
        filter: &Filter,
        q: &HashMap<String, String>,
    ) -> Result<Value, ApiError> {
        let mut st = self.lock();
        let limit: usize = q.get("limit").and_then(|l| l.parse().ok()).unwrap_or(0);
        let (rv, items, offset) = match q.get("continue").filter(|c| !c.is_empty()) {
            Some(token) => {
                let bad = || ApiError::new(400, "BadRequest", format!("continue token {token:?}"));
                let (id, off) = token.split_once(':').ok_or_else(bad)?;
                let id: u64 = id.parse().map_err(|_| bad())?;
                let off: usize = off.parse().map_err(|_| bad())?;
                let (rv, items) = st.snapshots.get(&id).cloned().ok_or_else(|| {
                    ApiError::new(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter.",
                    )
                })?;
                if rv <= st.compacted {
                    return Err(ApiError::new(
                        410,
                        "Expired",
                        "The provided continue parameter is too old to display a consistent \
                         list result. You can start a new list without the continue parameter.",
                    ));
                }
                (rv, items, off)
            }
            None => {
                if q.get("resourceVersionMatch").map(String::as_str) == Some("Exact") {
                    let want: u64 = q
                        .get("resourceVersion")
                        .and_then(|r| r.parse().ok())
                        .unwrap_or(0);
                    if want <= st.compacted {
                        return Err(gone(want, st.compacted));
                    }
                }
                let items: Vec<Value> = st
                    .objects
                    .get(&kind)
                    .map(|m| m.values().filter(|o| filter.matches(o)).cloned().collect())
                    .unwrap_or_default();
                (st.rv, items, 0)
            }
        };
        let end = if limit == 0 {
            items.len()
        } else {
            (offset + limit).min(items.len())
        };
        let page: Vec<Value> = items.get(offset..end).unwrap_or_default().to_vec();
        let mut metadata = json!({"resourceVersion": rv.to_string()});
        if end < items.len() {
            let id = match q.get("continue").and_then(|t| t.split_once(':')) {
                Some((id, _)) => id.parse().unwrap_or(0),
                None => {
                    st.next_snapshot += 1;
                    let id = st.next_snapshot;
                    st.snapshots.insert(id, (rv, items.clone()));
                    id
                }
            };
            metadata["continue"] = json!(format!("{id}:{end}"));
            metadata["remainingItemCount"] = json!(items.len() - end);
        }
        Ok(json!({
            "kind": format!("{}List", kind.name()),
            "apiVersion": kind.api_version(),
            "metadata": metadata,
            "items": page,
        }))
    }
}

async fn handle(shared: Arc<Shared>, req: Request<Incoming>) -> Response<BoxBody> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    shared.lock().requests.push(match &query {
        Some(q) => format!("{method} {path}?{q}"),
        None => format!("{method} {path}"),
    });
    if let Some(token) = &shared.opts.token {
        let ok = req
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bearer {token}"));
        if !ok {
            return error_response(&ApiError::new(401, "Unauthorized", "Unauthorized"));
        }
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return error_response(&ApiError::new(400, "BadRequest", e.to_string())),
    };
    let q = parse_query(query.as_deref());
    let Some(r) = route(&path) else {
        return error_response(&ApiError::new(
            404,
            "NotFound",
            format!("the test API server has no {path}"),
        ));
    };
    match dispatch(&shared, r, &method, &q, &content_type, &body).await {
        Ok(resp) => resp,
        Err(e) => error_response(&e),
    }
}

async fn dispatch(
    shared: &Arc<Shared>,
    r: Route,
    method: &Method,
    q: &HashMap<String, String>,
    content_type: &str,
    body: &[u8],
) -> Result<Response<BoxBody>, ApiError> {
    let parse_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(body)
            .map_err(|e| ApiError::new(400, "BadRequest", format!("body: {e}")))
    };
    match (r, method) {
        (Route::Version, &Method::GET) => Ok(json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-podnet-test",
                    "platform": "linux/amd64"}),
        )),
        (Route::Api, &Method::GET) => Ok(json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        )),
        (Route::Apis, &Method::GET) => {
            let groups: Vec<Value> = ["discovery.k8s.io", "networking.k8s.io"]
                .iter()
                .map(|g| {
                    let gv = json!({"groupVersion": format!("{g}/v1"), "version": "v1"});
                    json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
                })
                .collect();
            Ok(json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            ))
        }
        (Route::Control(what), &Method::GET) if what == "requests" => {
            let log = shared.lock().requests.clone();
            Ok(json_response(200, &json!(log)))
        }
        (Route::Control(what), &Method::POST) => {
            let server = ControlRef(shared.clone());
            match what.as_str() {
                "compact" => server.compact(),
                "expire-watches" => server.expire_watches(),
                "drop-watches" => server.drop_watches(),
                "bookmark" => server.send_bookmarks(),
                other => {
                    return Err(ApiError::new(
                        404,
                        "NotFound",
                        format!("no control {other:?}"),
                    ));
                }
            }
            Ok(json_response(
                200,
                &json!({"resourceVersion": server.rv().to_string()}),
            ))
        }
        (Route::Collection(kind, ns), &Method::GET) => {
            let filter = parse_filter(q, ns)?;
            if matches!(q.get("watch").map(String::as_str), Some("1" | "true")) {
                let (tx, rx) = mpsc::channel(256);
                tokio::spawn(watch(shared.clone(), kind, filter, q.clone(), tx));
                Ok(Response::builder()
                    .status(200)
                    .header("content-type", "application/json")
                    .body(ChannelBody(rx).boxed_unsync())
                    .expect("a valid response"))
            } else {
                Ok(json_response(200, &shared.list(kind, &filter, q)?))
            }
        }
        (Route::Collection(kind, ns), &Method::POST) => {
            let mut obj = parse_body()?;
            if let Some(ns) = ns {
                set_meta(&mut obj, "namespace", json!(ns));
            }
            let created = shared.lock().create(kind, obj)?;
            shared.wake();
            Ok(json_response(201, &created))
        }
        (Route::Object(kind, key, _), &Method::GET) => {
            Ok(json_response(200, &shared.lock().get(kind, &key)?))
        }
        (Route::Object(kind, key, status), &Method::PUT) => {
            let mut obj = parse_body()?;
            let updated = {
                let mut st = shared.lock();
                let old = st.get(kind, &key)?;
                keep_parts(&mut obj, &old, status);
                st.update(kind, &key, obj)?
            };
            shared.wake();
            Ok(json_response(200, &updated))
        }
        (Route::Object(kind, key, status), &Method::PATCH) => {
            let updated = {
                let mut st = shared.lock();
                let old = st.get(kind, &key)?;
                let mut obj = old.clone();
                // A patch that does not name a resourceVersion applies to whatever is stored.
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                apply_patch(&mut obj, content_type, body)?;
                keep_parts(&mut obj, &old, status);
                st.update(kind, &key, obj)?
            };
            shared.wake();
            Ok(json_response(200, &updated))
        }
        (Route::Object(kind, key, false), &Method::DELETE) => {
            let deleted = shared.lock().delete(kind, &key)?;
            shared.wake();
            Ok(json_response(200, &deleted))
        }
        (_, m) => Err(ApiError::new(
            405,
            "MethodNotAllowed",
            format!("{m} is not supported here by the test API server"),
        )),
    }
}

/// The `/status` subresource keeps the stored `spec` (metadata and status change, as the
/// API server's node status strategy does: flannel patches its annotations there); the main
/// resource keeps the stored `status`.
fn keep_parts(obj: &mut Value, old: &Value, status: bool) {
    let part = if status { "spec" } else { "status" };
    if let Some(m) = obj.as_object_mut() {
        match old.get(part) {
            Some(s) => {
                m.insert(part.into(), s.clone());
            }
            None => {
                m.remove(part);
            }
        }
    }
}

struct ControlRef(Arc<Shared>);

impl ControlRef {
    fn rv(&self) -> u64 {
        self.0.lock().rv
    }

    fn compact(&self) {
        let mut st = self.0.lock();
        st.compacted = st.rv;
        st.history.clear();
        drop(st);
        self.0.wake();
    }

    fn expire_watches(&self) {
        self.0.lock().expire_gen += 1;
        self.0.wake();
    }

    fn drop_watches(&self) {
        self.0.lock().drop_gen += 1;
        self.0.wake();
    }

    fn send_bookmarks(&self) {
        self.0.lock().bookmark_gen += 1;
        self.0.wake();
    }
}

impl ApiServer {
    /// Starts a server on its own thread; it listens when this returns.
    pub fn start(opts: ApiServerOptions) -> std::io::Result<ApiServer> {
        let listener = std::net::TcpListener::bind(opts.listen)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let acceptor = opts.tls.as_ref().map(tls_acceptor).transpose()?;
        let (bump, _) = tokio::sync::watch::channel(0u64);
        let shared = Arc::new(Shared {
            active_watches: std::sync::atomic::AtomicUsize::new(0),
            state: Mutex::new(State::default()),
            bump,
            opts,
        });
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("test-apiserver".into())
            .spawn(move || {
                rt.block_on(async move {
                        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
                            return;
                        };
                        loop {
                            let conn = tokio::select! {
                                c = listener.accept() => c,
                                _ = &mut stop_rx => return,
                            };
                            let Ok((stream, _)) = conn else { continue };
                            let s = s.clone();
                            let acceptor = acceptor.clone();
                            tokio::spawn(async move {
                                let svc = hyper::service::service_fn(move |req| {
                                    let s = s.clone();
                                    async move {
                                        Ok::<_, std::convert::Infallible>(handle(s, req).await)
                                    }
                                });
                                let http = hyper::server::conn::http1::Builder::new();
                                match acceptor {
                                    Some(a) => {
                                        let Ok(tls) = a.accept(stream).await else { return };
                                        let io = hyper_util::rt::TokioIo::new(tls);
                                        let _ = http.serve_connection(io, svc).await;
                                    }
                                    None => {
                                        let io = hyper_util::rt::TokioIo::new(stream);
                                        let _ = http.serve_connection(io, svc).await;
                                    }
                                }
                            });
                        }
                    });
            })?;
        Ok(ApiServer {
            shared,
            addr,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (`https://` with TLS), the `--master` / `server:` of a kubeconfig.
    pub fn url(&self) -> String {
        let scheme = if self.shared.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// A kubeconfig that points at this server (with the token, when there is one).
    pub fn kubeconfig(&self) -> String {
        let user = match &self.shared.opts.token {
            Some(t) => format!("    token: {t}\n"),
            None => "    {}\n".to_string(),
        };
        let ca = match &self.shared.opts.tls {
            Some(t) => format!(
                "    certificate-authority-data: {}\n",
                base64(t.ca_pem.as_bytes())
            ),
            None => String::new(),
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n{ca}    server: {}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n\
             current-context: test\nusers:\n- name: test\n  user:\n{user}",
            self.url()
        )
    }

    /// The current (cluster-wide) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.lock().rv
    }

    /// Creates an object; its `apiVersion` and `kind` say which resource.
    pub fn create(&self, obj: Value) -> Result<Value, ApiError> {
        let kind = kind_of(&obj)?;
        let r = self.shared.lock().create(kind, obj);
        self.shared.wake();
        r
    }

    /// Creates the object or replaces the stored one (status included).
    pub fn apply(&self, mut obj: Value) -> Result<Value, ApiError> {
        let kind = kind_of(&obj)?;
        let key = State::key_of(kind, &obj)?;
        let r = {
            let mut st = self.shared.lock();
            if st.get(kind, &key).is_ok() {
                if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                }
                st.update(kind, &key, obj)
            } else {
                st.create(kind, obj)
            }
        };
        self.shared.wake();
        r
    }

    /// Applies a merge patch (RFC 7386) to an object, status included.
    pub fn merge_patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        let key = kind.key(namespace, name);
        let r = {
            let mut st = self.shared.lock();
            let mut obj = st.get(kind, &key)?;
            if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                m.remove("resourceVersion");
            }
            merge_patch(&mut obj, patch);
            st.update(kind, &key, obj)
        };
        self.shared.wake();
        r
    }

    /// Reads an object (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = kind.key(namespace, name);
        self.shared.lock().get(kind, &key)
    }

    /// Deletes an object.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let key = kind.key(namespace, name);
        let r = self.shared.lock().delete(kind, &key);
        self.shared.wake();
        r
    }

    /// Drops the change history up to now: a watch or an `Exact` list from an older
    /// resourceVersion, or a `continue` token from before, gets 410 Gone. Running watches go
    /// on.
    pub fn compact(&self) {
        ControlRef(self.shared.clone()).compact();
    }

    /// Every running watch gets an `ERROR` event with a 410 `Status` and ends.
    pub fn expire_watches(&self) {
        ControlRef(self.shared.clone()).expire_watches();
    }

    /// Closes every running watch connection (the stream just ends).
    pub fn drop_watches(&self) {
        ControlRef(self.shared.clone()).drop_watches();
    }

    /// Every running watch that allows bookmarks gets one now.
    pub fn send_bookmarks(&self) {
        ControlRef(self.shared.clone()).send_bookmarks();
    }

    /// How many watches are streaming now: each has started, so it sees every later change
    /// and control ([`ApiServer::expire_watches`], [`ApiServer::drop_watches`], ...).
    pub fn active_watches(&self) -> usize {
        self.shared
            .active_watches
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The requests served so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.shared.lock().requests.clone()
    }
}

fn kind_of(obj: &Value) -> Result<Kind, ApiError> {
    let av = obj["apiVersion"].as_str().unwrap_or("");
    let k = obj["kind"].as_str().unwrap_or("");
    Kind::of(av, k).ok_or_else(|| {
        ApiError::new(
            400,
            "BadRequest",
            format!("the test API server has no {av}/{k}"),
        )
    })
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.shared.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_as_rfc_4648() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), enc);
        }
    }
}
