//! podnet-ipam: work in progress.
