//! The custom CPU convolution ops agree with Candle's stock ops, forward and backward.

use candle_core::{Device, Result, Tensor, Var};
use easel::gan::kernels;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64Mcg;

fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// max|a − b| ≤ 1e-4 · max(1, max|b|), with matching shapes.
fn assert_close(a: &Tensor, b: &Tensor, what: &str) {
    assert_eq!(a.dims(), b.dims(), "{what}: shapes differ");
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
    let err = a
        .iter()
        .zip(&b)
        .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(
        err <= 1e-4 * scale,
        "{what}: max error {err} (scale {scale})"
    );
}

/// Forward values and the gradients of a random weighted sum of the output, for x and w.
fn run(
    x: &Tensor,
    w: &Tensor,
    seed: u64,
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> (Tensor, Tensor, Tensor) {
    let xv = Var::from_tensor(x).unwrap();
    let wv = Var::from_tensor(w).unwrap();
    let y = f(xv.as_tensor(), wv.as_tensor()).unwrap();
    let r = random(y.dims(), seed);
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = grads.get(xv.as_tensor()).unwrap().clone();
    let dw = grads.get(wv.as_tensor()).unwrap().clone();
    (y, dx, dw)
}

/// (batch, in channels, h, w, out channels, kernel, padding, stride)
type ConvCase = (usize, usize, usize, usize, usize, usize, usize, usize);
const CONV: &[ConvCase] = &[
    (1, 1, 7, 5, 3, 3, 1, 1),
    (2, 3, 9, 7, 2, 3, 1, 2),
    (3, 3, 8, 6, 4, 4, 1, 2),
    (1, 1, 6, 9, 3, 5, 2, 1),
    (10, 3, 10, 6, 5, 5, 2, 2),
    (2, 3, 7, 5, 3, 4, 0, 2),
    (1, 3, 5, 8, 1, 4, 2, 1),
    (2, 1, 3, 4, 3, 3, 0, 1),
    // 16 output pixels an image: items go 16 to a GEMM, the last group shorter.
    (37, 2, 4, 4, 3, 3, 1, 1),
    // 64 and 90 output pixels: the input gradient's product written as it is (for the
    // cases above, with fewer than 64, it is written transposed).
    (2, 2, 16, 16, 3, 3, 1, 2),
    (2, 3, 10, 9, 5, 3, 1, 1),
    // Deep and wide enough for the packed f32 product on AVX-512 CPUs (maps under 64
    // pixels, ≥ 12 rows, ≥ 128 deep), both ways: 4x4 outputs, images 4 to a product, the
    // last group of 2; then one 8x6 output, one image a product, edges in every direction.
    (6, 8, 8, 8, 130, 4, 1, 2),
    (1, 8, 9, 7, 130, 4, 1, 1),
];

#[test]
fn conv2d_matches_candle() {
    for (i, &(n, cin, h, w, cout, k, p, s)) in CONV.iter().enumerate() {
        let x = random(&[n, cin, h, w], 10 + i as u64);
        let wt = random(&[cout, cin, k, k], 20 + i as u64);
        let case = format!("conv2d case {i} {:?}", CONV[i]);
        let (y, dx, dw) = run(&x, &wt, 30 + i as u64, |x, w| kernels::conv2d(x, w, p, s));
        let (ry, rdx, rdw) = run(&x, &wt, 30 + i as u64, |x, w| x.conv2d(w, p, s, 1, 1));
        assert_close(&y, &ry, &format!("{case}: forward"));
        assert_close(&dx, &rdx, &format!("{case}: grad x"));
        assert_close(&dw, &rdw, &format!("{case}: grad w"));
    }
}

/// (batch, in channels, h, w, out channels, kernel, padding, output padding, stride)
type ConvTCase = (
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const CONV_T: &[ConvTCase] = &[
    (1, 1, 4, 3, 3, 4, 1, 0, 2),
    (2, 3, 3, 5, 1, 3, 1, 1, 2),
    (10, 3, 5, 4, 3, 5, 2, 0, 1),
    (1, 3, 2, 3, 2, 4, 0, 0, 1),
    (3, 1, 4, 6, 3, 3, 0, 1, 2),
    (2, 3, 3, 3, 3, 5, 2, 1, 2),
    (2, 3, 4, 5, 2, 4, 2, 0, 2),
    // 4x4 inputs, 21 of them: groups of 16 and 5 in the input-gradient GEMM.
    (21, 2, 4, 4, 3, 4, 1, 0, 2),
    // 8x8 and 9x8 inputs: the forward product written as it is (transposed below 64
    // input pixels, as in the cases above).
    (2, 3, 8, 8, 2, 4, 1, 0, 2),
    (3, 2, 9, 8, 3, 3, 1, 1, 2),
    // 130 input channels: the forward product packed in f32 on AVX-512 CPUs, 4x4 inputs
    // 4 to a product, the last group of 1.
    (5, 130, 4, 4, 3, 4, 1, 0, 2),
];

/// The cases above again through the lesser kernels (`EASEL_CONV_KERNEL=gemm`: the `gemm`
/// crate's products, which CPUs without AVX-512 run), in a child process: the choice is
/// made once per process.
#[test]
fn lesser_kernels_match_candle_too() {
    if std::env::var_os("EASEL_CONV_KERNEL").is_some() {
        return; // the child, or a run that chose its kernels itself
    }
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "conv2d_matches_candle",
            "conv_transpose2d_matches_candle",
        ])
        .env("EASEL_CONV_KERNEL", "gemm")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("2 passed"),
        "with EASEL_CONV_KERNEL=gemm:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn conv_transpose2d_matches_candle() {
    for (i, &(n, cin, h, w, cout, k, p, op, s)) in CONV_T.iter().enumerate() {
        let x = random(&[n, cin, h, w], 40 + i as u64);
        let wt = random(&[cin, cout, k, k], 50 + i as u64);
        let case = format!("conv_transpose2d case {i} {:?}", CONV_T[i]);
        let (y, dx, dw) = run(&x, &wt, 60 + i as u64, |x, w| {
            kernels::conv_transpose2d(x, w, p, op, s)
        });
        let (ry, rdx, rdw) = run(&x, &wt, 60 + i as u64, |x, w| {
            x.conv_transpose2d(w, p, op, s, 1)
        });
        assert_close(&y, &ry, &format!("{case}: forward"));
        assert_close(&dx, &rdx, &format!("{case}: grad x"));
        assert_close(&dw, &rdw, &format!("{case}: grad w"));
    }
}

/// Height and width with different remainders need different output paddings in the
/// input gradient (Candle's own conv2d backward cannot do this shape): check the
/// gradients against the stock forward by linearity, ⟨∂L/∂x, v⟩ = L(v) for L = Σ r·conv(x, w).
#[test]
fn conv2d_gradients_with_uneven_remainders() {
    let (p, s, k) = (1, 2, 3);
    let x = random(&[2, 3, 9, 6], 1);
    let wt = random(&[2, 3, k, k], 2);
    let (y, dx, dw) = run(&x, &wt, 3, |x, w| kernels::conv2d(x, w, p, s));
    assert_close(&y, &x.conv2d(&wt, p, s, 1, 1).unwrap(), "forward");
    assert_eq!(dx.dims(), x.dims());
    let r = random(y.dims(), 3);
    let dot = |a: &Tensor, b: &Tensor| -> f32 {
        (a * b)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap()
    };
    for seed in 0..4 {
        let v = random(x.dims(), 100 + seed);
        let want = dot(&r, &v.conv2d(&wt, p, s, 1, 1).unwrap());
        let got = dot(&dx, &v);
        assert!(
            (want - got).abs() <= 1e-4 * want.abs().max(1.0),
            "grad x: {got} vs {want}"
        );
        let v = random(wt.dims(), 200 + seed);
        let want = dot(&r, &x.conv2d(&v, p, s, 1, 1).unwrap());
        let got = dot(&dw, &v);
        assert!(
            (want - got).abs() <= 1e-4 * want.abs().max(1.0),
            "grad w: {got} vs {want}"
        );
    }
}

#[test]
fn non_contiguous_inputs() {
    // x stored as [N, C, W, H] and viewed transposed; w likewise.
    let xt = random(&[2, 3, 7, 9], 5);
    let x = xt.transpose(2, 3).unwrap();
    assert!(!x.is_contiguous());
    let wt = random(&[4, 3, 3, 3], 6).transpose(2, 3).unwrap();
    let got = kernels::conv2d(&x, &wt, 1, 2).unwrap();
    let want = x.conv2d(&wt, 1, 2, 1, 1).unwrap();
    assert_close(&got, &want, "conv2d");
    let wt = random(&[3, 2, 4, 4], 7).transpose(2, 3).unwrap();
    let got = kernels::conv_transpose2d(&x, &wt, 1, 0, 2).unwrap();
    let want = x.conv_transpose2d(&wt, 1, 0, 2, 1).unwrap();
    assert_close(&got, &want, "conv_transpose2d");
}

#[test]
fn results_are_deterministic() {
    let x = random(&[13, 3, 12, 10], 8);
    let wt = random(&[5, 3, 4, 4], 9);
    let a = run(&x, &wt, 10, |x, w| kernels::conv2d(x, w, 1, 2));
    for _ in 0..3 {
        let b = run(&x, &wt, 10, |x, w| kernels::conv2d(x, w, 1, 2));
        for (u, v) in [(&a.0, &b.0), (&a.1, &b.1), (&a.2, &b.2)] {
            let u: Vec<f32> = u.flatten_all().unwrap().to_vec1().unwrap();
            let v: Vec<f32> = v.flatten_all().unwrap().to_vec1().unwrap();
            assert!(u == v, "results differ between runs");
        }
    }
}

#[test]
fn rejects_other_dtypes_and_bad_shapes() {
    let x = random(&[1, 2, 5, 5], 1)
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let w = random(&[3, 2, 3, 3], 2)
        .to_dtype(candle_core::DType::F64)
        .unwrap();
    let err = kernels::conv2d(&x, &w, 1, 1).unwrap_err().to_string();
    assert!(err.contains("f32"), "{err}");
    let x = random(&[1, 2, 5, 5], 1);
    let w = random(&[3, 4, 3, 3], 2);
    assert!(kernels::conv2d(&x, &w, 1, 1).is_err());
}

/// Big enough inputs that the weight gradient is summed over several batch chunks: a
/// small gradient (chunks in parallel, partial sums) and a large one (chunks in turn).
#[test]
fn weight_grad_over_several_chunks() {
    for (i, (xs, ws, p)) in [
        ([5, 3, 120, 136], [2, 3, 4, 4], 2),
        ([12, 256, 8, 8], [16, 256, 4, 4], 1),
    ]
    .into_iter()
    .enumerate()
    {
        let x = random(&xs, 11);
        let wt = random(&ws, 12);
        let (y, dx, dw) = run(&x, &wt, 13, |x, w| kernels::conv2d(x, w, p, 1));
        let (ry, rdx, rdw) = run(&x, &wt, 13, |x, w| x.conv2d(w, p, 1, 1, 1));
        assert_close(&y, &ry, &format!("case {i}: forward"));
        assert_close(&dx, &rdx, &format!("case {i}: grad x"));
        assert_close(&dw, &rdw, &format!("case {i}: grad w"));
        let again = run(&x, &wt, 13, |x, w| kernels::conv2d(x, w, p, 1)).2;
        let (a, b): (Vec<f32>, Vec<f32>) = (
            dw.flatten_all().unwrap().to_vec1().unwrap(),
            again.flatten_all().unwrap().to_vec1().unwrap(),
        );
        assert!(a == b, "case {i}: weight gradient differs between runs");
    }
}

/// Gradients of gradients: the weight gradient's own backward pass (through the
/// transposed op) agrees with Candle's.
#[test]
fn second_order_gradients() {
    let (p, s) = (1, 2);
    let x = random(&[2, 3, 7, 9], 21);
    let wt = random(&[4, 3, 3, 3], 22);
    let grads2 = |f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>| -> (Tensor, Tensor) {
        let xv = Var::from_tensor(&x).unwrap();
        let wv = Var::from_tensor(&wt).unwrap();
        let y = f(xv.as_tensor(), wv.as_tensor()).unwrap();
        let r = random(y.dims(), 23);
        let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
        let (dx, dw) = (
            g.get(xv.as_tensor()).unwrap(),
            g.get(wv.as_tensor()).unwrap(),
        );
        let q = random(dw.dims(), 24);
        let u = random(dx.dims(), 25);
        let l2 = ((dw * &q).unwrap().sum_all().unwrap() + (dx * &u).unwrap().sum_all().unwrap())
            .unwrap();
        let g2 = l2.backward().unwrap();
        (
            g2.get(xv.as_tensor()).unwrap().clone(),
            g2.get(wv.as_tensor()).unwrap().clone(),
        )
    };
    let (ddx, ddw) = grads2(&|x, w| kernels::conv2d(x, w, p, s));
    let (rdx, rdw) = grads2(&|x, w| x.conv2d(w, p, s, 1, 1));
    for t in [&rdx, &rdw] {
        let m = t
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(m > 0.1, "trivial second-order gradient");
    }
    assert_close(&ddx, &rdx, "d(grads)/dx");
    assert_close(&ddw, &rdw, "d(grads)/dw");
}

/// The fused batch norm agrees with the same normalisation written in Candle ops.
#[test]
fn batch_norm_matches_candle() {
    for (i, shape) in [vec![4, 3, 5, 7], vec![6, 5], vec![1, 2, 3, 3]]
        .into_iter()
        .enumerate()
    {
        let c = shape[1];
        let x = random(&shape, 70 + i as u64).affine(3.0, 0.5).unwrap();
        let gamma = random(&[c], 80 + i as u64);
        let beta = random(&[c], 90 + i as u64);
        let mut bshape = vec![1; shape.len()];
        bshape[1] = c;
        let dims: Vec<usize> = (0..shape.len()).filter(|&d| d != 1).collect();
        let run = |fused: bool| {
            let (xv, gv, bv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&gamma).unwrap(),
                Var::from_tensor(&beta).unwrap(),
            );
            let (x, g, b) = (xv.as_tensor(), gv.as_tensor(), bv.as_tensor());
            let (y, mean, var) = if fused {
                kernels::batch_norm_train(x, g, b, 1e-5).unwrap()
            } else {
                let mean = x.mean_keepdim(dims.as_slice()).unwrap();
                let centered = x.broadcast_sub(&mean).unwrap();
                let var = centered
                    .sqr()
                    .unwrap()
                    .mean_keepdim(dims.as_slice())
                    .unwrap();
                let y = centered
                    .broadcast_div(&(&var + 1e-5).unwrap().sqrt().unwrap())
                    .unwrap()
                    .broadcast_mul(&g.reshape(bshape.as_slice()).unwrap())
                    .unwrap()
                    .broadcast_add(&b.reshape(bshape.as_slice()).unwrap())
                    .unwrap();
                (y, mean.flatten_all().unwrap(), var.flatten_all().unwrap())
            };
            let r = random(&shape, 99);
            let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let get = |v: &Var| grads.get(v.as_tensor()).unwrap().clone();
            (y, mean.detach(), var.detach(), get(&xv), get(&gv), get(&bv))
        };
        let a = run(true);
        let b = run(false);
        let case = format!("batch norm case {i} {shape:?}");
        assert_close(&a.0, &b.0, &format!("{case}: forward"));
        assert_close(&a.1, &b.1, &format!("{case}: mean"));
        assert_close(&a.2, &b.2, &format!("{case}: var"));
        assert_close(&a.3, &b.3, &format!("{case}: grad x"));
        assert_close(&a.4, &b.4, &format!("{case}: grad gamma"));
        assert_close(&a.5, &b.5, &format!("{case}: grad beta"));
    }
}

/// `t` rounded to bfloat16 (kept as f32).
fn to_bf16(t: &Tensor) -> Tensor {
    t.to_dtype(candle_core::DType::BF16)
        .unwrap()
        .to_dtype(candle_core::DType::F32)
        .unwrap()
}

/// `precision: "bf16"` on the CPU: the three products of each convolution run on bf16
/// copies (AVX512_BF16). On values bf16 holds exactly they equal f32's to summation order,
/// forward and both gradients; on others they differ (the rounding happened). Without
/// AVX512_BF16 (or with `EASEL_CONV_KERNEL=gemm`) they are the f32 ops, bit for bit.
#[test]
fn bf16_convolutions_equal_f32_on_bf16_values() {
    use easel::gan::Precision;
    let bf16 = Precision::Bf16;
    for (i, &(n, cin, h, w, cout, k, p, s)) in CONV.iter().enumerate() {
        let case = format!("bf16 case {i} {:?}", CONV[i]);
        let x = to_bf16(&random(&[n, cin, h, w], 40 + i as u64));
        let wt = to_bf16(&random(&[cout, cin, k, k], 50 + i as u64));
        let f = |x: &Tensor, w: &Tensor| kernels::conv2d_with(x, w, p, s, bf16);
        // The output gradient's weights are bf16 values too: `run` multiplies by them.
        let y0 = x.conv2d(&wt, p, s, 1, 1).unwrap();
        let r = to_bf16(&random(y0.dims(), 60 + i as u64));
        let grads = |f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>| {
            let (xv, wv) = (
                Var::from_tensor(&x).unwrap(),
                Var::from_tensor(&wt).unwrap(),
            );
            let y = f(xv.as_tensor(), wv.as_tensor()).unwrap();
            let g = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
            let (dx, dw) = (g.get(&xv).unwrap().clone(), g.get(&wv).unwrap().clone());
            (y, dx, dw)
        };
        let (y, dx, dw) = grads(&f);
        let (ry, rdx, rdw) = grads(&|x, w| x.conv2d(w, p, s, 1, 1));
        assert_close(&y, &ry, &format!("{case} forward"));
        assert_close(&dx, &rdx, &format!("{case} input gradient"));
        assert_close(&dw, &rdw, &format!("{case} weight gradient"));

        // Transposed, as G's upsampling layers: [cin, cout, k, k] read the other way.
        let xt = to_bf16(&random(
            &[n, cout, y.dim(2).unwrap(), y.dim(3).unwrap()],
            70 + i as u64,
        ));
        let wt_t = to_bf16(&random(&[cout, cin, k, k], 80 + i as u64));
        let op = 0;
        let ours = kernels::conv_transpose2d_with(&xt, &wt_t, p, op, s, bf16);
        match xt.conv_transpose2d(&wt_t, p, op, s, 1) {
            Ok(theirs) => assert_close(&ours.unwrap(), &theirs, &format!("{case} transposed")),
            Err(_) => assert!(ours.is_err(), "{case}: transposed shapes Candle refuses"),
        }
    }
    // On values bf16 cannot hold, bf16 products round them: a different result, close.
    let x = random(&[2, 3, 9, 7], 1);
    let wt = random(&[4, 3, 3, 3], 2);
    let exact = kernels::conv2d(&x, &wt, 1, 1).unwrap();
    let ours = kernels::conv2d_with(&x, &wt, 1, 1, bf16).unwrap();
    let diff = (&ours - &exact)
        .unwrap()
        .abs()
        .unwrap()
        .max_keepdim(0)
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    if Precision::bf16_available() {
        assert!(diff > 0.0 && diff < 0.05, "bf16 rounding: {diff}");
    } else {
        assert_eq!(diff, 0.0, "no AVX512_BF16: the f32 ops");
    }
}
