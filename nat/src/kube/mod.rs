//! Kubernetes input: the objects a service proxy reads, and the validated service model built
//! from them, shared by every proxy mode, and the [`plan`] of what each service port needs,
//! which every proxy mode's compiler writes out.

mod model;
mod objects;
pub mod plan;
pub mod topology;

pub use model::{
    Categorized, ClusterState, Endpoint, EndpointTopology, IpFamily, ServiceKey, ServicePort,
    ServicePortName, ServiceType, SessionAffinity, TargetPort, categorize_endpoints,
    parse_cidr_sloppy, parse_ip_sloppy,
};
pub use objects::{
    ClientIpConfig, EndpointConditions, EndpointHints, EndpointPortSpec, EndpointSlice,
    EndpointSpec, HintName, KubeObject, LoadBalancerIngress, LoadBalancerStatus, Node, ObjectMeta,
    Parsed, SERVICE_NAME_LABEL, Service, ServicePortSpec, ServiceSpec, ServiceStatus,
    SessionAffinityConfig, Warning, parse_document, parse_objects,
};
pub use plan::{PortPlan, ServicePlan};
