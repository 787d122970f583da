//! podnet-encap: work in progress.
