//! The register-blocked dense-layer kernel the renderer and the fused fit trainer share:
//! buffers are feature-major (`[feature][pixel]`, `CHUNK` pixels a row), weights
//! `[inputs][outputs]` row-major, and B outputs × PB pixels of accumulators stay in
//! registers while one input row is loaded once for B multiply-adds. Fixed sizes (const
//! generics) let the compiler unroll and vectorise it inside each caller's
//! `target_feature` function.

/// `a·b + c`, fused where the caller was compiled with FMA.
#[inline(always)]
pub(super) fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA {
        a.mul_add(b, c)
    } else {
        a * b + c
    }
}

/// `out[o + j][p] = bias[o + j] + Σ_k w[k][o + j] · inp[k][p]` for `j < B` and every
/// pixel `p` of the chunk (no bias: 0).
#[inline(always)]
pub(super) fn output_block<const FMA: bool, const B: usize, const PB: usize, const CHUNK: usize>(
    w: &[f32],
    bias: Option<&[f32]>,
    ni: usize,
    no: usize,
    inp: &[f32],
    out: &mut [f32],
    o: usize,
) {
    let bias: [f32; B] = match bias {
        Some(b) => b[o..o + B].try_into().expect("bias block"),
        None => [0.0; B],
    };
    for p in (0..CHUNK).step_by(PB) {
        let mut acc = [[0f32; PB]; B];
        for j in 0..B {
            acc[j] = [bias[j]; PB];
        }
        for k in 0..ni {
            let x: [f32; PB] = inp[k * CHUNK + p..k * CHUNK + p + PB]
                .try_into()
                .expect("pixels");
            let wk: [f32; B] = w[k * no + o..k * no + o + B].try_into().expect("weights");
            for j in 0..B {
                for lane in 0..PB {
                    acc[j][lane] = madd::<FMA>(wk[j], x[lane], acc[j][lane]);
                }
            }
        }
        for j in 0..B {
            out[(o + j) * CHUNK + p..(o + j) * CHUNK + p + PB].copy_from_slice(&acc[j]);
        }
    }
}
