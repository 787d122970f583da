//! podnet-nat: work in progress.
