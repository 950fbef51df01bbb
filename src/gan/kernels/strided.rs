//! The copies of im2col and col2im. The maps of a 32x32 GAN are 4–16 pixels wide, so an
//! im2col row is a handful of values and copying row by row (with its zero fills) costs
//! more in bookkeeping than in values: with AVX-512, im2col is a [`GatherPlan`] (every 16
//! values of the matrix one masked gather, their offsets worked out once per convolution)
//! and col2im's stride-2 rows `x[2j] += v[j]` are masked adds of eight values a vector.
//! Elsewhere, and with `EASEL_CONV_KERNEL=gemm` (the lesser kernels, so tests cover both),
//! the scalar row copies run; the results are the same bits either way (copies, and one
//! add per value in the same order).

/// Whether the AVX-512 copies run: AVX-512F, unless `EASEL_CONV_KERNEL=gemm`.
pub(super) fn avx512() -> bool {
    super::packed_gemm::Format::f32_available()
}

/// One im2col row of `seg.len()` outputs: `seg[j] = src[first + (j − lo)·stride]` for j
/// in `lo..hi`, zero elsewhere, and zero everywhere without a source row (padding).
pub(super) fn row(
    seg: &mut [f32],
    src: Option<&[f32]>,
    (lo, hi): (usize, usize),
    first: usize,
    stride: usize,
) {
    let Some(src) = src.filter(|_| lo < hi) else {
        seg.fill(0.0);
        return;
    };
    seg[..lo].fill(0.0);
    seg[hi..].fill(0.0);
    let (dst, src) = (&mut seg[lo..hi], &src[first..]);
    if stride == 1 {
        dst.copy_from_slice(&src[..dst.len()]);
    } else {
        for (o, v) in dst.iter_mut().zip(src.iter().step_by(stride)) {
            *o = *v;
        }
    }
}

/// `x[j·stride] += v` for the values `v` in turn.
pub(super) fn add(x: &mut [f32], stride: usize, values: &[f32]) {
    add_iter(x, stride, values.iter())
}

/// [`add`] from an iterator (the columns of a transposed matrix).
pub(super) fn add_iter<'a>(x: &mut [f32], stride: usize, values: impl Iterator<Item = &'a f32>) {
    if stride == 1 {
        for (o, v) in x.iter_mut().zip(values) {
            *o += *v;
        }
    } else {
        for (o, v) in x.iter_mut().step_by(stride).zip(values) {
            *o += *v;
        }
    }
}

/// An im2col matrix as gathers: for every kernel tap, the output pixels in vectors of
/// 16, each lane with the offset it reads in its channel's plane or none (padding, a
/// zero). The same for every channel and image of a convolution.
pub(super) struct GatherPlan {
    channels: usize,
    out_hw: usize,
    /// Per tap, `out_hw.div_ceil(16)` vectors of offsets.
    offsets: Vec<[i32; 16]>,
    /// Which lanes of each vector read (the rest are zero).
    reads: Vec<u16>,
}

impl GatherPlan {
    /// `source(tap, pixel)`: the plane offset output `pixel` reads for `tap`, if any.
    pub(super) fn new<T: Copy>(
        channels: usize,
        out_hw: usize,
        taps: impl Iterator<Item = T>,
        source: impl Fn(T, usize) -> Option<usize>,
    ) -> Self {
        let (mut offsets, mut reads) = (vec![], vec![]);
        for tap in taps {
            for start in (0..out_hw).step_by(16) {
                let (mut lanes, mut read) = ([0i32; 16], 0u16);
                for (l, lane) in lanes.iter_mut().enumerate() {
                    if let Some(at) = (start + l < out_hw)
                        .then(|| source(tap, start + l))
                        .flatten()
                    {
                        *lane = at as i32;
                        read |= 1 << l;
                    }
                }
                offsets.push(lanes);
                reads.push(read);
            }
        }
        GatherPlan {
            channels,
            out_hw,
            offsets,
            reads,
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) mod avx512 {
    use std::arch::x86_64::*;

    /// The low `n` (≤ 16) lanes.
    #[inline]
    fn lanes(n: usize) -> __mmask16 {
        ((1u32 << n.min(16)) - 1) as __mmask16
    }

    /// Writes the im2col matrix of one image `x` (`plan.channels` planes of `plane`
    /// values) to `dst`, rows `ld` apart: one masked gather and one store per 16 values.
    ///
    /// # Safety
    /// The CPU has AVX-512F; every offset the plan reads is below `plane`; `dst` is valid
    /// for writes of `(rows − 1)·ld + out_hw` values (rows: channels × taps).
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn im2col(
        plan: &super::GatherPlan,
        x: &[f32],
        plane: usize,
        dst: *mut f32,
        ld: usize,
    ) {
        assert!(x.len() >= plan.channels * plane, "im2col: image too short");
        let vectors = plan.out_hw.div_ceil(16);
        let taps = plan.offsets.len() / vectors.max(1);
        for ci in 0..plan.channels {
            let base = x[ci * plane..].as_ptr();
            for tap in 0..taps {
                // SAFETY: row ci·taps + tap of the matrix, within what the caller vouched for.
                let row = unsafe { dst.add((ci * taps + tap) * ld) };
                for v in 0..vectors {
                    let at = tap * vectors + v;
                    let m = (plan.out_hw - v * 16).min(16);
                    // SAFETY: the valid lanes' offsets lie in this channel's plane (the
                    // caller's promise); lanes v·16 .. v·16 + m of the row are the caller's.
                    unsafe {
                        let idx = _mm512_loadu_si512(plan.offsets[at].as_ptr().cast());
                        let val = _mm512_mask_i32gather_ps::<4>(
                            _mm512_setzero_ps(),
                            plan.reads[at],
                            idx,
                            base.cast(),
                        );
                        _mm512_mask_storeu_ps(row.add(v * 16), lanes(m), val);
                    }
                }
            }
        }
    }

    /// `x[2j] += v[j]` for the values of `v`.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    pub(in super::super) unsafe fn add_s2(x: &mut [f32], v: &[f32]) {
        let n = v.len();
        if n == 0 {
            return;
        }
        assert!(2 * (n - 1) < x.len(), "col2im row past the image");
        let mut j = 0;
        while j < n {
            // Eight values a vector: they land on its even lanes.
            let m = (n - j).min(8);
            let touched = lanes(2 * m - 1) & 0x5555;
            // SAFETY: the assert above; only the even lanes of the first 2m − 1 (all in x)
            // are read or written, and m values of v from j.
            unsafe {
                let at = x.as_mut_ptr().add(2 * j);
                let spread = _mm512_maskz_expandloadu_ps(touched, v.as_ptr().add(j));
                let sum = _mm512_add_ps(_mm512_maskz_loadu_ps(touched, at), spread);
                _mm512_mask_storeu_ps(at, touched, sum);
            }
            j += m;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every row length up to past two vectors: the AVX-512 adds (where the CPU has
    /// them) give what the scalar adds give.
    #[test]
    fn avx512_adds_match_the_scalar_adds() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            for wo in 1usize..40 {
                let values: Vec<f32> = (0..wo).map(|j| j as f32 + 0.25).collect();
                let x: Vec<f32> = (0..2 * wo - 1).map(|i| i as f32 - 7.0).collect();
                let (mut want, mut got) = (x.clone(), x);
                add(&mut want, 2, &values);
                // SAFETY: AVX-512F checked above.
                unsafe { avx512::add_s2(&mut got, &values) };
                assert_eq!(got, want, "add, {wo} values");
            }
        }
    }
}
