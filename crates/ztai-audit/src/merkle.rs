//! The Merkle tree over audit records, as RFC 9162 §2.1 (RFC 6962) defines it.
//!
//! Leaves are `SHA-256(0x00 ‖ record JSON)`, interior nodes `SHA-256(0x01 ‖ left ‖ right)`, and a
//! tree of `n` leaves splits at the largest power of two below `n`. Keeping to the RFC exactly
//! (checked against the Certificate Transparency test vectors) means any RFC 6962 verifier can
//! check our proofs, not only ours.
//!
//! Two shapes of state: `Frontier` is the compact range a writer keeps while appending (at most
//! one hash per set bit of the size, so O(log n) memory and amortised two hashes per leaf), and
//! the proof functions work on a slice of leaf hashes, which offline tools read from the store.
//! Pure: no I/O.

use sha2::{Digest, Sha256};

/// A SHA-256 output.
pub type Hash = [u8; 32];

/// `SHA-256(0x00 ‖ data)`.
pub fn leaf_hash(data: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(data);
    h.finalize().into()
}

/// `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof cannot be made or does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProofError {
    #[error("leaf {index} is not in a tree of {size} records")]
    IndexOutOfRange { index: u64, size: u64 },
    #[error("a tree of {size} records cannot be proven from the {available} records available")]
    SizeOutOfRange { size: u64, available: u64 },
    #[error("a consistency proof needs 0 < old size <= new size; got old {old} and new {new}")]
    BadSizes { old: u64, new: u64 },
    #[error("the proof has the wrong number of hashes for these sizes")]
    WrongLength,
    #[error("the proof does not lead to the expected root: the record or the log was changed")]
    RootMismatch,
}

/// The compact range of a growing tree: the roots of its perfect subtrees, largest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, from the most significant bit down.
    peaks: Vec<Hash>,
}

impl Frontier {
    pub fn new() -> Self {
        Frontier::default()
    }

    /// Rebuilds a frontier from its stored parts; refused when they do not fit together.
    pub fn from_parts(size: u64, peaks: Vec<Hash>) -> Option<Self> {
        (size.count_ones() as usize == peaks.len()).then_some(Frontier { size, peaks })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn peaks(&self) -> &[Hash] {
        &self.peaks
    }

    /// Appends one leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut node = leaf;
        // Each trailing one bit of the old size is a subtree of the same height as the carry.
        let mut size = self.size;
        while size & 1 == 1 {
            match self.peaks.pop() {
                Some(left) => node = node_hash(&left, &node),
                None => break,
            }
            size >>= 1;
        }
        self.peaks.push(node);
        self.size += 1;
    }

    /// The tree head: the peaks folded from the smallest up.
    pub fn root(&self) -> Hash {
        let mut iter = self.peaks.iter().rev();
        let Some(last) = iter.next() else {
            return empty_root();
        };
        iter.fold(*last, |acc, left| node_hash(left, &acc))
    }
}

/// Largest power of two strictly less than `n` (n >= 2).
fn split(n: usize) -> usize {
    debug_assert!(n >= 2);
    let mut k = 1;
    while k << 1 < n {
        k <<= 1;
    }
    k
}

/// MTH over `leaves` (leaf hashes), RFC 9162 §2.1.1.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let (l, r) = leaves.split_at(split(leaves.len()));
            node_hash(&root(l), &root(r))
        }
    }
}

/// The audit path of leaf `index` in the tree of all of `leaves`, RFC 9162 §2.1.3.1.
pub fn inclusion_proof(index: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let size = leaves.len() as u64;
    let i = usize::try_from(index)
        .ok()
        .filter(|&i| i < leaves.len())
        .ok_or(ProofError::IndexOutOfRange { index, size })?;
    let mut out = Vec::new();
    path(i, leaves, &mut out);
    Ok(out)
}

fn path(m: usize, leaves: &[Hash], out: &mut Vec<Hash>) {
    if leaves.len() <= 1 {
        return;
    }
    let k = split(leaves.len());
    let (l, r) = leaves.split_at(k);
    if m < k {
        path(m, l, out);
        out.push(root(r));
    } else {
        path(m - k, r, out);
        out.push(root(l));
    }
}

/// The consistency proof from the tree of the first `old` leaves to the tree of all of
/// `leaves`, RFC 9162 §2.1.4.1.
pub fn consistency_proof(old: u64, leaves: &[Hash]) -> Result<Vec<Hash>, ProofError> {
    let new = leaves.len() as u64;
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    let m = usize::try_from(old).map_err(|_| ProofError::BadSizes { old, new })?;
    let mut out = Vec::new();
    subproof(m, leaves, true, &mut out);
    Ok(out)
}

fn subproof(m: usize, leaves: &[Hash], whole: bool, out: &mut Vec<Hash>) {
    let n = leaves.len();
    if m == n {
        if !whole {
            out.push(root(leaves));
        }
        return;
    }
    let k = split(n);
    let (l, r) = leaves.split_at(k);
    if m <= k {
        subproof(m, l, whole, out);
        out.push(root(r));
    } else {
        subproof(m - k, r, false, out);
        out.push(root(l));
    }
}

/// Checks an inclusion proof, RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    expected_root: &Hash,
) -> Result<(), ProofError> {
    if index >= size {
        return Err(ProofError::IndexOutOfRange { index, size });
    }
    let (mut f_n, mut s_n) = (index, size - 1);
    let mut r = *leaf;
    for p in proof {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &r != expected_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Checks a consistency proof between two tree heads, RFC 9162 §2.1.4.2.
pub fn verify_consistency(
    old: u64,
    new: u64,
    proof: &[Hash],
    old_root: &Hash,
    new_root: &Hash,
) -> Result<(), ProofError> {
    if old == 0 || old > new {
        return Err(ProofError::BadSizes { old, new });
    }
    if old == new {
        if !proof.is_empty() {
            return Err(ProofError::WrongLength);
        }
        return if old_root == new_root {
            Ok(())
        } else {
            Err(ProofError::RootMismatch)
        };
    }
    // When the old size is a power of two its root is the first node of the path.
    let mut path: Vec<Hash> = Vec::with_capacity(proof.len() + 1);
    if old.is_power_of_two() {
        path.push(*old_root);
    }
    path.extend_from_slice(proof);
    let (mut f_n, mut s_n) = (old - 1, new - 1);
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    let mut iter = path.iter();
    let first = iter.next().ok_or(ProofError::WrongLength)?;
    let (mut f_r, mut s_r) = (*first, *first);
    for c in iter {
        if s_n == 0 {
            return Err(ProofError::WrongLength);
        }
        if f_n & 1 == 1 || f_n == s_n {
            f_r = node_hash(c, &f_r);
            s_r = node_hash(c, &s_r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            s_r = node_hash(&s_r, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    if s_n != 0 {
        return Err(ProofError::WrongLength);
    }
    if &f_r != old_root || &s_r != new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The Certificate Transparency reference inputs and tree heads for sizes 0..=8.
    const LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];
    const ROOTS: [&str; 9] = [
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    fn h(s: &str) -> Hash {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    fn leaves() -> Vec<Hash> {
        LEAVES
            .iter()
            .map(|l| leaf_hash(&hex::decode(l).unwrap()))
            .collect()
    }

    #[test]
    fn tree_heads_match_the_reference_vectors_both_ways() {
        let all = leaves();
        let mut f = Frontier::new();
        assert_eq!(f.root(), h(ROOTS[0]));
        for n in 1..=8 {
            f.push(all[n - 1]);
            assert_eq!(root(&all[..n]), h(ROOTS[n]), "MTH size {n}");
            assert_eq!(f.root(), h(ROOTS[n]), "frontier size {n}");
        }
    }

    #[test]
    fn inclusion_proofs_match_the_reference_vectors() {
        let all = leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (
                0,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                5,
                8,
                &[
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                3,
                &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
            ),
            (
                1,
                5,
                &[
                    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (index, size, want) in cases {
            let proof = inclusion_proof(index, &all[..size]).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "leaf {index} of {size}");
            let i = usize::try_from(index).unwrap();
            verify_inclusion(index, size as u64, &all[i], &proof, &h(ROOTS[size])).unwrap();
            assert_eq!(
                verify_inclusion(index, size as u64, &all[i], &proof, &h(ROOTS[0])),
                Err(ProofError::RootMismatch)
            );
        }
    }

    #[test]
    fn consistency_proofs_match_the_reference_vectors() {
        let all = leaves();
        let cases: [(u64, usize, &[&str]); 4] = [
            (1, 1, &[]),
            (
                1,
                8,
                &[
                    "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
                ],
            ),
            (
                6,
                8,
                &[
                    "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                    "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
                ],
            ),
            (
                2,
                5,
                &[
                    "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                    "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                ],
            ),
        ];
        for (old, new, want) in cases {
            let proof = consistency_proof(old, &all[..new]).unwrap();
            let want: Vec<Hash> = want.iter().map(|s| h(s)).collect();
            assert_eq!(proof, want, "{old} -> {new}");
            let o = usize::try_from(old).unwrap();
            verify_consistency(old, new as u64, &proof, &h(ROOTS[o]), &h(ROOTS[new])).unwrap();
        }
    }

    #[test]
    fn bad_sizes_and_indexes_are_errors_not_panics() {
        let all = leaves();
        assert!(inclusion_proof(8, &all).is_err());
        assert!(consistency_proof(0, &all).is_err());
        assert!(consistency_proof(9, &all).is_err());
        assert!(verify_inclusion(3, 3, &all[0], &[], &all[0]).is_err());
        assert!(verify_consistency(0, 3, &[], &all[0], &all[0]).is_err());
        assert!(verify_consistency(4, 3, &[], &all[0], &all[0]).is_err());
        assert!(Frontier::from_parts(3, vec![all[0]]).is_none());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Every leaf of every tree size proves, a changed leaf or a wrong index does not, and
        // every pair of sizes is consistent while a changed old root is not.
        #[test]
        fn proofs_round_trip_and_reject_changes(n in 1usize..70, seed in any::<u8>()) {
            let leaves: Vec<Hash> = (0..n).map(|i| leaf_hash(&[seed, i as u8, (i >> 8) as u8])).collect();
            let mut f = Frontier::new();
            for l in &leaves { f.push(*l); }
            let r = root(&leaves);
            prop_assert_eq!(f.root(), r);
            let rebuilt = Frontier::from_parts(f.size(), f.peaks().to_vec()).unwrap();
            prop_assert_eq!(rebuilt.root(), r);
            for i in 0..n {
                let proof = inclusion_proof(i as u64, &leaves).unwrap();
                prop_assert!(verify_inclusion(i as u64, n as u64, &leaves[i], &proof, &r).is_ok());
                let forged = leaf_hash(b"forged");
                prop_assert!(verify_inclusion(i as u64, n as u64, &forged, &proof, &r).is_err());
                if n > 1 {
                    let other = (i + 1) % n;
                    prop_assert!(verify_inclusion(other as u64, n as u64, &leaves[i], &proof, &r).is_err());
                }
            }
            for m in 1..=n {
                let proof = consistency_proof(m as u64, &leaves).unwrap();
                let old = root(&leaves[..m]);
                prop_assert!(verify_consistency(m as u64, n as u64, &proof, &old, &r).is_ok());
                if m < n {
                    let bad = node_hash(&old, &old);
                    prop_assert!(verify_consistency(m as u64, n as u64, &proof, &bad, &r).is_err());
                }
            }
        }
    }
}
