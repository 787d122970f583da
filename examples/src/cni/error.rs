//! CNI error results: the spec's codes (from [`podnet_cni::error`]) and podnet-cni's own.

pub use podnet_cni::error::*;

/// podnet-cni: the kernel refused a change (the message says which, with the errno).
pub const KERNEL: u32 = 100;
/// podnet-cni: the bridge already holds an address that conflicts with the gateway.
pub const ADDRESS_CONFLICT: u32 = 101;
/// podnet-cni: the container already has an interface of the requested name.
pub const INTERFACE_EXISTS: u32 = 102;
/// podnet-cni: no free address in a range set, or a requested address is not available.
pub const NO_ADDRESS: u32 = 103;
/// podnet-cni: the IPAM lease directory could not be read or written.
pub const IPAM_STORE: u32 = 104;
/// podnet-cni: CHECK found the container's network different from `prevResult`.
pub const CHECK_FAILED: u32 = 105;
/// podnet-cni: an external program (iptables-restore for ipMasq) failed.
pub const EXTERNAL_PROGRAM: u32 = 106;

/// podnet's errors as CNI errors.
pub(crate) trait CniErrorExt {
    /// An error from a podnet-links request, `what` saying what was being done.
    fn kernel(what: impl std::fmt::Display, e: podnet_links::Error) -> Self;
}

impl CniErrorExt for CniError {
    fn kernel(what: impl std::fmt::Display, e: podnet_links::Error) -> CniError {
        CniError::new(KERNEL, format!("{what}: {e}"))
    }
}

/// An IPAM error as a CNI error, with a hint for the common ones.
pub(crate) fn alloc(e: podnet_ipam::AllocError) -> CniError {
    use podnet_ipam::AllocError as A;
    let code = match &e {
        A::Config(_) => INVALID_CONFIG,
        A::Exhausted { .. } | A::Unavailable { .. } => NO_ADDRESS,
        A::BadArgument { .. } => INVALID_ENVIRONMENT,
        _ => IPAM_STORE,
    };
    let hint = match &e {
        A::Exhausted { .. } => {
            "; widen ipam.ranges or remove stale leases (CNI GC, or DEL of gone containers)"
        }
        A::Io { .. } => "; check that ipam.dataDir is on a writable file system",
        _ => "",
    };
    CniError::new(code, format!("ipam: {e}{hint}"))
}
