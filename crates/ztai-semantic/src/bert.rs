//! A BERT encoder (the MiniLM-L6 shape) written against `candle-nn`'s layers.
//!
//! Ours rather than `candle-transformers`' because that crate compiles some three hundred model
//! families we never run, and because the tier needs exactly this: a padded batch of windows in,
//! one mean-pooled vector per window out. The layer names follow Hugging Face's checkpoints, so
//! the base weights load unchanged and our fine-tuned layers replace theirs by name.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder, embedding, layer_norm, linear};

/// The encoder's shape (all-MiniLM-L6-v2); a checkpoint of another shape fails to load with an
/// error naming the tensor.
pub const HIDDEN: usize = 384;
pub const HEADS: usize = 12;
pub const LAYERS: usize = 6;
pub const INTERMEDIATE: usize = 1536;
pub const VOCAB: usize = 30522;
pub const MAX_POSITIONS: usize = 512;
const LAYER_NORM_EPS: f64 = 1e-12;

#[derive(Debug)]
struct Layer {
    query: Linear,
    key: Linear,
    value: Linear,
    attention_out: Linear,
    attention_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    output_norm: LayerNorm,
}

impl Layer {
    fn load(vb: VarBuilder<'_>) -> Result<Self> {
        let att = vb.pp("attention");
        Ok(Layer {
            query: linear(HIDDEN, HIDDEN, att.pp("self").pp("query"))?,
            key: linear(HIDDEN, HIDDEN, att.pp("self").pp("key"))?,
            value: linear(HIDDEN, HIDDEN, att.pp("self").pp("value"))?,
            attention_out: linear(HIDDEN, HIDDEN, att.pp("output").pp("dense"))?,
            attention_norm: layer_norm(HIDDEN, LAYER_NORM_EPS, att.pp("output").pp("LayerNorm"))?,
            intermediate: linear(HIDDEN, INTERMEDIATE, vb.pp("intermediate").pp("dense"))?,
            output: linear(INTERMEDIATE, HIDDEN, vb.pp("output").pp("dense"))?,
            output_norm: layer_norm(HIDDEN, LAYER_NORM_EPS, vb.pp("output").pp("LayerNorm"))?,
        })
    }

    /// `x`: [batch, tokens, hidden]; `bias`: [batch, 1, 1, tokens], 0 for tokens and a large
    /// negative number for padding.
    fn forward(&self, x: &Tensor, bias: &Tensor) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let head_dim = HIDDEN / HEADS;
        let heads = |y: Tensor| -> Result<Tensor> {
            y.reshape((b, t, HEADS, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let q = heads(self.query.forward(x)?)?;
        let k = heads(self.key.forward(x)?)?;
        let v = heads(self.value.forward(x)?)?;
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?.contiguous()?)? * scale)?.broadcast_add(bias)?;
        let weights = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = weights
            .matmul(&v)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((b, t, HIDDEN))?;
        let x = self
            .attention_norm
            .forward(&(x + self.attention_out.forward(&context)?)?)?;
        let h = self.intermediate.forward(&x)?.gelu_erf()?;
        self.output_norm.forward(&(x + self.output.forward(&h)?)?)
    }
}

/// The encoder: embeddings and the transformer layers.
#[derive(Debug)]
pub struct Bert {
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    norm: LayerNorm,
    layers: Vec<Layer>,
}

impl Bert {
    pub fn load(vb: VarBuilder<'_>) -> Result<Self> {
        let emb = vb.pp("embeddings");
        let layers = (0..LAYERS)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert {
            words: embedding(VOCAB, HIDDEN, emb.pp("word_embeddings"))?,
            positions: embedding(MAX_POSITIONS, HIDDEN, emb.pp("position_embeddings"))?,
            types: embedding(2, HIDDEN, emb.pp("token_type_embeddings"))?,
            norm: layer_norm(HIDDEN, LAYER_NORM_EPS, emb.pp("LayerNorm"))?,
            layers,
        })
    }

    /// Mean-pooled vectors ([batch, hidden]) of a padded batch: `ids` and `mask` are
    /// [batch, tokens] (`mask` 1.0 for a token, 0.0 for padding).
    pub fn pooled(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, t) = ids.dims2()?;
        let positions = Tensor::arange(0u32, t as u32, ids.device())?
            .unsqueeze(0)?
            .broadcast_as((b, t))?
            .contiguous()?;
        let types = ids.zeros_like()?;
        let mut x = self.norm.forward(
            &((self.words.forward(ids)? + self.positions.forward(&positions)?)?
                + self.types.forward(&types)?)?,
        )?;
        let bias = ((mask.ones_like()? - mask)? * -1e4)?
            .unsqueeze(1)?
            .unsqueeze(1)?
            .to_dtype(DType::F32)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        let m = mask.unsqueeze(D::Minus1)?;
        let summed = x.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?;
        summed.broadcast_div(&counts)
    }
}
