//! Where an offline command finds the store: a data directory, or the gateway's configuration
//! file, so `ztai audit verify --config ztai.toml` reads whatever store that gateway uses.

use anyhow::Context;
use std::path::PathBuf;

/// The store an offline command opens.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The data directory holding the store (`ztai.db`) and the keys beside it.
    #[arg(long, default_value = ".ztai")]
    data_dir: PathBuf,
    /// The gateway's configuration file: use the store and data directory it names
    /// (`[storage] data_dir`) instead of --data-dir.
    #[arg(long, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
}

impl StoreArgs {
    /// The data directory, from the configuration file when one was given.
    pub fn data_dir(&self) -> anyhow::Result<PathBuf> {
        match &self.config {
            None => Ok(self.data_dir.clone()),
            Some(path) => Ok(ztai_gateway::Config::load(path)
                .with_context(|| {
                    format!(
                        "cannot read the configuration `{}` named by --config",
                        path.display()
                    )
                })?
                .data_dir),
        }
    }
}
