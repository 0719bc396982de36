//! Model and dataset integrity: the checks that decide whether a model file may be loaded.
//!
//! Today this holds the malicious model file scanner ([`scan`]); hashing, manifests and
//! OpenSSF model signing build on the same [`scan::Blob`] seam. Engines here take bytes or a
//! [`scan::Blob`] and return reports; walking directories and printing stay in the CLI.

pub mod scan;
