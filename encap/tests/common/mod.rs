//! Helpers shared by the tunnel's kernel tests.
#![allow(dead_code)]

pub mod twonodes;
