//! A CNI plugin (spec 1.1): the bridge plugin with host-local-compatible IPAM (being written).
