//! The generator's only source of randomness: a seeded splitmix64 [`Rng`] and
//! the independent streams derived from it, one per customer and one for the
//! formatting choices. It must not read entropy from anywhere else, so that the
//! same seed always gives the same bytes.

/// splitmix64: tiny, fast, and good enough for sample data.
#[derive(Debug, Clone)]
pub(super) struct Rng(u64);

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Rng {
    /// An independent stream for `(seed, stream)`.
    pub(super) fn derive(seed: u64, stream: u64) -> Rng {
        Rng(mix64(
            seed ^ mix64(stream.wrapping_add(0x9E37_79B9_7F4A_7C15)),
        ))
    }
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix64(self.0)
    }
    /// Uniform in [0, 1).
    pub(super) fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    pub(super) fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }
    /// Uniform in [0, n); 0 when n is 0.
    pub(super) fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }
    /// Uniform in [lo, hi], inclusive.
    pub(super) fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + self.below(u64::from(hi - lo) + 1) as u32
    }
    /// `x` rounded down or up at random so that the mean is `x` (x ≥ 0).
    pub(super) fn round(&mut self, x: f64) -> u64 {
        let floor = x as u64;
        floor + u64::from(self.chance(x - floor as f64))
    }
}
