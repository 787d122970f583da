//! nftables over netlink, and kube-proxy's nftables mode.
//!
//! - [`types`]: the leaf types (families, hooks, key types and values, verdicts) the others
//!   build on.
//! - [`model`]: tables, chains, sets and verdict maps, elements, rules, and [`Transaction`]s
//!   of add / flush / delete operations; a transaction renders as an `nft -f` script.
//! - [`rule`]: the matches and statements of kube-proxy's rules (`ip daddr . meta l4proto .
//!   th dport vmap @service-ips`, `numgen random mod N vmap { … }`, `dnat to`, `masquerade
//!   fully-random`, `fib saddr type local`, `ct state new`, …), as text and as the
//!   register-machine expressions nft would send.
//! - [`expr`]: those expressions as netlink attributes, including the ones
//!   netlink-packet-netfilter does not type (nat, ct, numgen, fib, masq, reject, dynset,
//!   counter), and back.
//! - [`encode`]: a [`Transaction`] as the bytes of one nftables batch (all or nothing), pure.
//! - [`netlink`]: the socket that sends batches and reads tables back through dumps
//!   ([`NftSocket`]); the dump replies' typed forms ([`RuleInfo`], ...) keep the expressions
//!   podnet does not decode, so a rule read back writes back unchanged.
//! - [`fake`]: the same transactions applied to an in-memory table (dry runs, tests).
//! - [`sync`]'s input is compiled by [`crate::kube_proxy::nftables_mode`] from the service
//!   model (kube-proxy's table `kube-proxy`).
//! - [`sync`]: full and incremental syncs ([`Planner`], [`NftablesSyncer`]).
//!
//! ```
//! use podnet_nat::kube::{ClusterState, IpFamily, parse_objects};
//! use podnet_nat::kube_proxy::NodeSettings;
//! use podnet_nat::kube_proxy::nftables_mode::NftProxySettings;
//! use podnet_nat::nftables::{FakeTable, Planner};
//!
//! let yaml = "kind: Service\nmetadata: {name: web, namespace: demo}\n\
//!             spec: {clusterIP: 10.96.0.10, ports: [{name: http, port: 80}]}\n";
//! let (objects, _) = parse_objects(yaml, "inline");
//! let (state, _) = ClusterState::from_objects(&objects, IpFamily::V4);
//! let mut planner = Planner::new(NftProxySettings::new(NodeSettings::new("node-1", IpFamily::V4)));
//! let plan = planner.plan_full(&state, &[], &[]);
//! assert!(plan.tx.render().contains(
//!     "add element ip kube-proxy no-endpoint-services { 10.96.0.10 . tcp . 80 comment \"demo/web:http\" : goto reject-chain }"
//! ));
//! let mut table = FakeTable::new(plan.tx.family, "kube-proxy");
//! table.apply(&plan.tx).unwrap(); // what the kernel would hold
//! ```

mod answers;
mod dump;
pub mod encode;
pub mod expr;
pub mod fake;
mod lower;
pub mod model;
pub mod netlink;
pub(crate) mod precheck;
pub mod rule;
pub mod sync;
pub mod types;

pub use fake::{FakeError, FakeTable};
pub use model::{
    BaseChain, Chain, ChainType, Element, Family, Hook, KeyPart, KeyType, Op, Rule, Set,
    Transaction, Verdict,
};
pub use netlink::{ChainInfo, ElementInfo, NftError, NftSocket, RuleInfo, SetInfo};
pub use rule::{AddrField, AddrItem, Affinity, Expr, VmapKey};
pub use sync::{NftSyncError, NftSyncReport, NftablesSyncer, Plan, Planner};
