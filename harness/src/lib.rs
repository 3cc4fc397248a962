//! certctl-harness: the machinery that proves the certctl chart on live clusters.

pub mod tools;
