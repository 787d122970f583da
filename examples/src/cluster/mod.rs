//! podnet-cluster: a simulated cluster in network namespaces.
