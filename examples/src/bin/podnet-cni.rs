//! `podnet-cni`: a CNI 1.1 bridge plugin with host-local-compatible IPAM done in process.
//!
//! Install it next to the reference plugins (e.g. /opt/cni/bin/podnet-cni) and set
//! `"type": "podnet-cni"` in a network config written for the reference `bridge` plugin.

fn main() {
    std::process::exit(podnet_examples::cni::main());
}
