//! Model and dataset integrity: the checks that decide whether a model file may be loaded.
//!
//! - [`scan`]: malicious model file scanning (pickles and everything that wraps them, headers
//!   of data-only formats).
//! - [`manifest`]: hashing a model directory into the manifest the OpenSSF model-signing format
//!   signs, in parallel.
//! - [`signing`]: signing and verifying those manifests (elliptic-curve key, certificate chain,
//!   Sigstore bundles verified offline).
//!
//! Engines here take bytes, a [`scan::Blob`] or a model path and return reports; printing,
//! progress bars and exit codes stay in the CLI.

pub mod manifest;
pub mod scan;
pub mod signing;
