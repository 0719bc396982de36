//! The semantic tier's cost: one text through the encoder, at one window (126 word pieces) and at
//! the tier's bound (512 word pieces, six overlapping windows in one batch). Run on one core as the
//! budget is stated: `RAYON_NUM_THREADS=1 cargo bench -p ztai-semantic`. Needs the fetched weights
//! (`ztai encoder fetch`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use criterion::{Criterion, criterion_group, criterion_main};
use ztai_semantic::{Encoder, HEAD, MAX_TOKENS, WINDOW_TOKENS, weights};

/// Common words: one word piece each in this vocabulary.
fn words(n: usize) -> String {
    "the report lists every open ticket by owner"
        .split(' ')
        .cycle()
        .take(n)
        .collect::<Vec<_>>()
        .join(" ")
}

fn encoder(c: &mut Criterion) {
    let e = Encoder::from_dir(&weights::default_dir(), HEAD)
        .expect("fetch the weights first: ztai encoder fetch");
    let short = words(WINDOW_TOKENS - 2);
    let one: Vec<usize> = e.windows(&short).unwrap().iter().map(Vec::len).collect();
    assert_eq!(one, vec![WINDOW_TOKENS], "one full window");
    let long = words(MAX_TOKENS);
    let pieces: usize = e.windows(&long).unwrap().len();
    assert_eq!(pieces, 6, "512 word pieces are six overlapping windows");
    let mut g = c.benchmark_group("semantic");
    g.sample_size(20);
    g.bench_function("encoder_126_tokens", |b| {
        b.iter(|| e.logit(std::hint::black_box(&short)).unwrap())
    });
    g.bench_function("encoder_512_tokens", |b| {
        b.iter(|| e.logit(std::hint::black_box(&long)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, encoder);
criterion_main!(benches);
