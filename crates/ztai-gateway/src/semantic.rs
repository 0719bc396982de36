//! The semantic tier as the gateway runs it.
//!
//! Inspection runs inline on the runtime's worker threads, which is right for the microsecond
//! tiers and wrong for an encoder that takes milliseconds: every other request on that worker
//! would wait. So the gateway hands the encoder to the inspector behind `OffWorker`, which moves
//! the worker's other tasks elsewhere for the duration of the call (`block_in_place`). Loading
//! follows `[inspect.semantic]`: `on` refuses to start without the weights, `auto` starts without
//! the tier and says so, `off` never loads it.

use std::sync::Arc;

use tokio::runtime::{Handle, RuntimeFlavor};
use ztai_core::Channel;
use ztai_inspect::{Judgement, SemanticScorer, SemanticTier};
use ztai_semantic::{Encoder, HEAD, Loaded};

use crate::config::SemanticConfig;
use crate::error::StartError;

#[derive(Debug)]
struct OffWorker(Encoder);

impl SemanticScorer for OffWorker {
    fn judge(&self, text: &str, channel: Channel) -> Result<Judgement, String> {
        match Handle::try_current() {
            Ok(h) if h.runtime_flavor() == RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.0.judge(text, channel))
            }
            _ => self.0.judge(text, channel),
        }
    }
}

/// The tier `config` asks for, or `None` (off, or `auto` without fetched weights: logged).
pub(crate) fn tier(config: &SemanticConfig) -> Result<Option<SemanticTier>, StartError> {
    match ztai_semantic::load(config.mode, &config.dir, HEAD)
        .map_err(|source| StartError::Semantic { source })?
    {
        Loaded::Encoder(e) => {
            tracing::info!(dir = %config.dir.display(), band = config.band, "semantic tier on");
            Ok(Some(SemanticTier::new(
                Arc::new(OffWorker(*e)),
                config.band,
            )))
        }
        Loaded::Off => Ok(None),
        Loaded::NotFetched(dir) => {
            tracing::warn!(
                dir = %dir.display(),
                "semantic tier off: its weights have not been fetched (`ztai encoder fetch`)"
            );
            Ok(None)
        }
    }
}
