//! A small etcd v3 client over the committed gRPC code in [`pb`](super::pb): one connection,
//! an auth token sent with every call and renewed when etcd says it expired, and the errors
//! as [`EtcdError`]. Only what the store needs.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::metadata::AsciiMetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

use super::pb::auth_client::AuthClient;
use super::pb::kv_client::KvClient;
use super::pb::lease_client::LeaseClient;
use super::pb::watch_client::WatchClient;
use super::pb::{AuthenticateRequest, WatchRequest, WatchResponse};

/// What went wrong talking to etcd.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EtcdError {
    /// An endpoint is not a URL the client can use.
    #[error("invalid etcd endpoint {endpoint:?}: {reason}")]
    Endpoint {
        /// The endpoint as given.
        endpoint: String,
        /// Why it is not usable.
        reason: String,
    },
    /// None of the endpoints answered.
    #[error("cannot reach etcd at {endpoints}: {reason}")]
    Unreachable {
        /// The endpoints tried, comma-separated.
        endpoints: String,
        /// The last connection error.
        reason: String,
    },
    /// etcd (or the gRPC layer on the way) answered with an error status.
    #[error("{code}: {message}")]
    Status {
        /// The gRPC status code's name (`Unauthenticated`, `Unavailable`, ...).
        code: String,
        /// etcd's message (`etcdserver: user name is empty`, ...).
        message: String,
    },
}

impl EtcdError {
    fn status(s: &tonic::Status) -> Self {
        EtcdError::Status {
            code: format!("{:?}", s.code()),
            message: s.message().to_string(),
        }
    }
}

impl From<tonic::Status> for EtcdError {
    fn from(s: tonic::Status) -> Self {
        EtcdError::status(&s)
    }
}

/// Adds the auth token (if any) to every request as etcd's `token` metadata.
#[derive(Clone, Default)]
pub(super) struct Token(Arc<Mutex<Option<AsciiMetadataValue>>>);

impl Interceptor for Token {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let token = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(t) = token {
            req.metadata_mut().insert("token", t);
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, Token>;

/// A connection to one etcd endpoint, with the credentials to (re)authenticate.
#[derive(Clone)]
pub(super) struct Client {
    channel: Channel,
    token: Token,
    user: Option<(String, String)>,
}

impl Client {
    /// Connects to the first endpoint that answers, then authenticates when `user` is given.
    pub(super) async fn connect(
        endpoints: &[String],
        user: Option<(String, String)>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Client, EtcdError> {
        let mut last = String::from("no endpoint given");
        for e in endpoints {
            let endpoint = Endpoint::from_shared(e.clone())
                .map_err(|err| EtcdError::Endpoint {
                    endpoint: e.clone(),
                    reason: err.to_string(),
                })?
                .connect_timeout(connect_timeout)
                .timeout(request_timeout)
                .tcp_nodelay(true);
            match endpoint.connect().await {
                Ok(channel) => {
                    let client = Client {
                        channel,
                        token: Token::default(),
                        user,
                    };
                    client.authenticate().await?;
                    return Ok(client);
                }
                Err(err) => last = format!("{e}: {}", error_chain(&err)),
            }
        }
        Err(EtcdError::Unreachable {
            endpoints: endpoints.join(","),
            reason: last,
        })
    }

    /// Asks etcd for a token for the configured user (nothing to do without one).
    async fn authenticate(&self) -> Result<(), EtcdError> {
        let Some((name, password)) = &self.user else {
            return Ok(());
        };
        let resp = AuthClient::new(self.channel.clone())
            .authenticate(AuthenticateRequest {
                name: name.clone(),
                password: password.clone(),
            })
            .await?
            .into_inner();
        let value =
            AsciiMetadataValue::try_from(resp.token.as_str()).map_err(|_| EtcdError::Status {
                code: "Internal".into(),
                message: "etcd returned an auth token that is not ASCII".into(),
            })?;
        *self.token.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(value);
        Ok(())
    }

    pub(super) fn kv(&self) -> KvClient<Svc> {
        KvClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    pub(super) fn lease(&self) -> LeaseClient<Svc> {
        LeaseClient::with_interceptor(self.channel.clone(), self.token.clone())
    }

    /// Opens a watch stream: `requests` feeds it (create, cancel), the answer streams back.
    pub(super) async fn watch(
        &self,
        requests: tokio::sync::mpsc::Receiver<WatchRequest>,
    ) -> Result<tonic::Streaming<WatchResponse>, EtcdError> {
        let mut client = WatchClient::with_interceptor(self.channel.clone(), self.token.clone());
        let stream = tokio_stream::wrappers::ReceiverStream::new(requests);
        Ok(client.watch(stream).await?.into_inner())
    }

    /// Runs `call`; when etcd says the token is no longer valid (simple tokens expire after
    /// five idle minutes, and a restarted etcd forgets them all), authenticates again and
    /// runs it once more.
    pub(super) async fn retry_auth<T, F, Fut>(&self, mut call: F) -> Result<T, EtcdError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        match call().await {
            Err(s) if self.user.is_some() && token_expired(&s) => {
                self.authenticate().await?;
                Ok(call().await?)
            }
            other => Ok(other?),
        }
    }
}

/// Whether a status says the token must be renewed (etcd's `ErrInvalidAuthToken`,
/// `ErrAuthOldRevision`).
fn token_expired(s: &tonic::Status) -> bool {
    let m = s.message();
    m.contains("invalid auth token") || m.contains("revision of auth store is old")
}

/// An error and its causes on one line (tonic's transport errors hide the reason in sources).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_tokens_are_recognised_by_etcds_messages() {
        assert!(token_expired(&tonic::Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(token_expired(&tonic::Status::invalid_argument(
            "etcdserver: revision of auth store is old"
        )));
        assert!(!token_expired(&tonic::Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password"
        )));
    }

    #[test]
    fn status_errors_keep_code_and_message() {
        let e = EtcdError::from(tonic::Status::permission_denied(
            "etcdserver: permission denied",
        ));
        assert_eq!(
            e.to_string(),
            "PermissionDenied: etcdserver: permission denied"
        );
    }

    #[test]
    fn bad_endpoints_are_refused_not_panicked_on() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(Client::connect(
                &["not a url".to_string()],
                None,
                Duration::from_millis(200),
                Duration::from_millis(200),
            ))
            .err()
            .expect("refused");
        assert!(matches!(err, EtcdError::Endpoint { .. }), "{err}");
        // A port nothing listens on: unreachable, named.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}");
        let err = rt
            .block_on(Client::connect(
                std::slice::from_ref(&url),
                None,
                Duration::from_millis(500),
                Duration::from_millis(500),
            ))
            .err()
            .expect("nothing listens");
        assert!(
            matches!(&err, EtcdError::Unreachable { endpoints, .. } if *endpoints == url),
            "{err}"
        );
    }
}
