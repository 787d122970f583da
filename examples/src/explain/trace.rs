//! The traced probe (being written).

use super::{Choice, ExplainError, Packet, Topology, Walk};
use serde::Serialize;

/// One comparison between the prediction and the kernel's trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Agreement {
    /// The namespace.
    pub ns: String,
    /// What is compared.
    pub what: String,
    /// Whether the trace agrees.
    pub agrees: bool,
}

/// The result of a traced probe.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeReport {
    /// The comparisons.
    pub agreements: Vec<Agreement>,
}

impl ProbeReport {
    /// Whether every comparison agrees.
    pub fn agrees(&self) -> bool {
        self.agreements.iter().all(|a| a.agrees)
    }
}

impl std::fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for a in &self.agreements {
            writeln!(
                f,
                "{} {}: {}",
                if a.agrees { "ok  " } else { "DIFF" },
                a.ns,
                a.what
            )?;
        }
        Ok(())
    }
}

/// Sends a traced probe and compares.
pub fn probe(
    _topo: &Topology,
    _source: &str,
    _packet: &Packet,
    _choice: &Choice,
) -> Result<(Walk, ProbeReport), ExplainError> {
    Err(ExplainError::Probe("not yet".into()))
}
