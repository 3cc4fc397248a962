//! The chart's install modes and the scenario tests that prove them.
//!
//! - [`modes`]: the four modes (default, external-db, cert-manager, ha) and their values
//!   files under `scenarios/modes/`, the same files the live tier installs.
//! - [`render`]: `helm template` / `helm lint` through the pinned helm, parsed into objects.
//! - [`strict`]: every rendered object checked field by field against the Kubernetes
//!   schema (k8s-openapi types for built-in kinds, CRD schemas for custom resources).
//! - [`crd`]: a structural validator for CRD `openAPIV3Schema`s.
//! - [`pod_security`]: the Pod Security "restricted" profile over rendered pod templates.
//! - [`mutants`]: defects put back into scratch copies, and the runner that scores the
//!   suite by the ones it kills.

pub mod crd;
pub mod modes;
pub mod mutants;
pub mod pod_security;
pub mod render;
pub mod strict;
