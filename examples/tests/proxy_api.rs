//! kube-proxy's iptables and nftables modes on the simulated cluster with input from the test
//! API server (`podnet-cluster --kube`: `podnet-test-apiserver`, a fixture, in the fabric):
//! the same checks as `proxy.rs` makes with files (`kube_proxy_cluster::services_behave`),
//! with the endpoint change made through the API, then the changes only the API makes while
//! traffic flows (an endpoint removed and added back, a 410 Gone relist in the middle, the
//! Service deleted).

mod kube_proxy_cluster;

use kube_proxy_cluster::{
    Input, SERVICES, api_changes_behave, services_behave_from, up_with_input,
};

fn on_the_api_server(tag: &str, mode: &str) {
    podnet_testsupport::require_root!();
    let g = up_with_input(tag, mode, SERVICES, Input::Api);
    services_behave_from(&g, mode, Input::Api);
    api_changes_behave(&g, mode);
}

#[test]
fn iptables_mode_on_the_api_server() {
    on_the_api_server("kpa-ipt", "iptables");
}

#[test]
fn nftables_mode_on_the_api_server() {
    on_the_api_server("kpa-nft", "nftables");
}
