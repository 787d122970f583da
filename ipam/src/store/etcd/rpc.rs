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

    /// KV.Range: the keys in a range (or their count).
    pub(super) async fn range(
        &mut self,
        r: pb::RangeRequest,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let at = ("etcdserverpb.KV", "Range", "/etcdserverpb.KV/Range");
        self.unary(at, r).await
    }

    /// KV.Put: writes one key.
    pub(super) async fn put(
        &mut self,
        r: pb::PutRequest,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let at = ("etcdserverpb.KV", "Put", "/etcdserverpb.KV/Put");
        self.unary(at, r).await
    }

    /// KV.DeleteRange: deletes the keys in a range.
    pub(super) async fn delete_range(
        &mut self,
        r: pb::DeleteRangeRequest,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        let at = (
            "etcdserverpb.KV",
            "DeleteRange",
            "/etcdserverpb.KV/DeleteRange",
        );
        self.unary(at, r).await
    }

    /// KV.Txn: compares, then the success or the failure operations, atomically.
    pub(super) async fn txn(
        &mut self,
        r: pb::TxnRequest,
    ) -> Result<Response<pb::TxnResponse>, Status> {
        let at = ("etcdserverpb.KV", "Txn", "/etcdserverpb.KV/Txn");
        self.unary(at, r).await
    }

    /// KV.Compact: drops the history before a revision.
    pub(super) async fn compact(
        &mut self,
        r: pb::CompactionRequest,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        let at = ("etcdserverpb.KV", "Compact", "/etcdserverpb.KV/Compact");
        self.unary(at, r).await
    }

    /// Lease.LeaseGrant: a new lease with a TTL.
    pub(super) async fn lease_grant(
        &mut self,
        r: pb::LeaseGrantRequest,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        let at = (
            "etcdserverpb.Lease",
            "LeaseGrant",
            "/etcdserverpb.Lease/LeaseGrant",
        );
        self.unary(at, r).await
    }

    /// Lease.LeaseRevoke: ends a lease and deletes its keys.
    pub(super) async fn lease_revoke(
        &mut self,
        r: pb::LeaseRevokeRequest,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        let at = (
            "etcdserverpb.Lease",
            "LeaseRevoke",
            "/etcdserverpb.Lease/LeaseRevoke",
        );
        self.unary(at, r).await
    }

    /// Lease.LeaseTimeToLive: a lease's remaining TTL (and its keys).
    pub(super) async fn lease_time_to_live(
        &mut self,
        r: pb::LeaseTimeToLiveRequest,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        let at = (
            "etcdserverpb.Lease",
            "LeaseTimeToLive",
            "/etcdserverpb.Lease/LeaseTimeToLive",
        );
        self.unary(at, r).await
    }

    /// Auth.Authenticate: a token for a user and password.
    pub(super) async fn authenticate(
        &mut self,
        r: pb::AuthenticateRequest,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let at = (
            "etcdserverpb.Auth",
            "Authenticate",
            "/etcdserverpb.Auth/Authenticate",
        );
        self.unary(at, r).await
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
