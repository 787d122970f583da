//! Helpers for tests that run in a virtual machine.

pub(crate) mod vm;
pub(crate) mod vm_tests;
