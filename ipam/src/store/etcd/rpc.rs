//! One gRPC client for every etcd call podnet makes.
//!
//! tonic's generator writes one client type per etcd service (KV, Watch, Lease, Auth), each a
//! copy of the same constructor and call code; podnet generates only the messages (`pb.rs`)
//! and keeps this one client, whose methods are named after etcd's RPCs.

use tonic::codec::Streaming;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::codegen::{Body, Bytes, GrpcMethod, StdError};
use tonic::{Response, Status};

use super::pb;

/// Writes one method per unary RPC, a row each: `name: Service.Method(Request) -> Response;`
/// (the gRPC path is `/etcdserverpb.Service/Method`), as tonic's generator would.
macro_rules! unary_rpcs {
    ($($(#[$doc:meta])* $name:ident: $service:ident.$method:ident($req:ident) -> $resp:ident;)+) => {
        $(
            $(#[$doc])*
            pub(super) async fn $name(
                &mut self,
                r: pb::$req,
            ) -> Result<Response<pb::$resp>, Status> {
                let at = (
                    concat!("etcdserverpb.", stringify!($service)),
                    stringify!($method),
                    concat!("/etcdserverpb.", stringify!($service), "/", stringify!($method)),
                );
                self.unary(at, r).await
            }
        )+
    };
}

/// A client of etcd's `etcdserverpb` services over one (possibly intercepted) channel.
#[derive(Debug, Clone)]
pub(super) struct Rpc<T> {
    inner: tonic::client::Grpc<T>,
}

impl<T> Rpc<T>
where
    T: tonic::client::GrpcService<tonic::body::Body>,
    T::Error: Into<StdError>,
    T::ResponseBody: Body<Data = Bytes> + Send + 'static,
    <T::ResponseBody as Body>::Error: Into<StdError> + Send,
{
    /// A client over `service` (a channel, or a channel behind an interceptor).
    pub(super) fn new(service: T) -> Self {
        Rpc {
            inner: tonic::client::Grpc::new(service),
        }
    }

    /// Waits until the channel is ready: tonic's own message when it is not.
    async fn ready(&mut self) -> Result<(), Status> {
        self.inner
            .ready()
            .await
            .map_err(|e| Status::unknown(format!("Service was not ready: {}", e.into())))
    }

    /// One unary call of `method` in `service`, at `path` (`/etcdserverpb.<service>/<method>`).
    async fn unary<Q, R>(
        &mut self,
        (service, method, path): (&'static str, &'static str, &'static str),
        request: Q,
    ) -> Result<Response<R>, Status>
    where
        Q: prost::Message + Send + Sync + 'static,
        R: prost::Message + Default + Send + Sync + 'static,
    {
        self.ready().await?;
        let mut req = tonic::Request::new(request);
        req.extensions_mut()
            .insert(GrpcMethod::new(service, method));
        let codec = tonic_prost::ProstCodec::default();
        self.inner
            .unary(req, PathAndQuery::from_static(path), codec)
            .await
    }

    unary_rpcs! {
        /// KV.Range: the keys in a range (or their count).
        range: KV.Range(RangeRequest) -> RangeResponse;
        /// KV.Put: writes one key.
        put: KV.Put(PutRequest) -> PutResponse;
        /// KV.DeleteRange: deletes the keys in a range.
        delete_range: KV.DeleteRange(DeleteRangeRequest) -> DeleteRangeResponse;
        /// KV.Txn: compares, then the success or the failure operations, atomically.
        txn: KV.Txn(TxnRequest) -> TxnResponse;
        /// KV.Compact: drops the history before a revision.
        compact: KV.Compact(CompactionRequest) -> CompactionResponse;
        /// Lease.LeaseGrant: a new lease with a TTL.
        lease_grant: Lease.LeaseGrant(LeaseGrantRequest) -> LeaseGrantResponse;
        /// Lease.LeaseRevoke: ends a lease and deletes its keys.
        lease_revoke: Lease.LeaseRevoke(LeaseRevokeRequest) -> LeaseRevokeResponse;
        /// Lease.LeaseTimeToLive: a lease's remaining TTL (and its keys).
        lease_time_to_live: Lease.LeaseTimeToLive(LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse;
        /// Auth.Authenticate: a token for a user and password.
        authenticate: Auth.Authenticate(AuthenticateRequest) -> AuthenticateResponse;
    }

    /// Watch.Watch: a bidirectional stream of watch requests and responses.
    pub(super) async fn watch(
        &mut self,
        requests: impl tonic::IntoStreamingRequest<Message = pb::WatchRequest>,
    ) -> Result<Response<Streaming<pb::WatchResponse>>, Status> {
        self.ready().await?;
        let mut req = requests.into_streaming_request();
        req.extensions_mut()
            .insert(GrpcMethod::new("etcdserverpb.Watch", "Watch"));
        let codec = tonic_prost::ProstCodec::default();
        let path = PathAndQuery::from_static("/etcdserverpb.Watch/Watch");
        self.inner.streaming(req, path, codec).await
    }
}
