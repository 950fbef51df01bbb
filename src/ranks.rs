//! The processes that train one run together: one by default; N when `easel train` is
//! started by `mpirun -np N` or `srun --mpi=pmix -n N` in a build with the `mpi` feature.
//!
//! Data parallel, the same maths as one process: every rank draws the whole batch's
//! randomness from (seed, step) and keeps its rows ([`rows`]); each rank's loss is its share
//! of the batch's loss, so the ranks' gradients *summed* are the one-process gradient.
//! Collectives here are the few the trainer needs; [`Threads`] runs ranks as threads of one
//! process (the tests' stand-in for MPI, with the same contract).

use std::ops::Range;
use std::rc::Rc;
use std::sync::{Arc, Condvar, Mutex};

use anyhow::{bail, Result};

/// What every rank of a run can do together. Every rank calls the same collectives in the
/// same order; each returns only when all ranks have made it.
pub trait Ranks {
    /// This process's rank, 0 ..= size − 1; rank 0 writes the run directory.
    fn rank(&self) -> usize;
    /// How many ranks train the run.
    fn size(&self) -> usize;
    /// Element-wise sums over ranks, in place; every rank gets the same numbers.
    fn sum_f32(&self, values: &mut [f32]) -> Result<()>;
    fn sum_f64(&self, values: &mut [f64]) -> Result<()>;
    /// Rank 0's bytes, on every rank (what other ranks pass in is replaced).
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()>;
    /// Every rank's value, in rank order, on every rank.
    fn gather(&self, value: u64) -> Result<Vec<u64>>;
    /// The element-wise sum over ranks of `t`, a flat f32 tensor on a GPU, computed where
    /// it lies (NCCL); `None` when these ranks cannot (then it goes through [`sum_f32`]).
    ///
    /// [`sum_f32`]: Ranks::sum_f32
    fn sum_on_device(&self, _t: &candle_core::Tensor) -> Result<Option<candle_core::Tensor>> {
        Ok(None)
    }
    /// This rank's index among the ranks on its machine (which GPU it takes).
    fn local_rank(&self) -> usize {
        0
    }
    /// Waits until every rank has arrived.
    fn barrier(&self) -> Result<()> {
        self.gather(0).map(|_| ())
    }
    /// This rank failed: end the others rather than leave them waiting (MPI aborts the
    /// job; threads' collectives return an error).
    fn abandon(&self, why: &str);
    /// "MPI, 2 ranks" — for logs and status.json.
    fn describe(&self) -> String;
}

/// The rows `[start, end)` of a batch of `batch` that `rank` of `size` trains on: as
/// equal as they can be, the first ranks one more when they do not divide.
pub fn rows(batch: usize, rank: usize, size: usize) -> Range<usize> {
    let (base, extra) = (batch / size, batch % size);
    let start = rank * base + rank.min(extra);
    start..start + base + usize::from(rank < extra)
}

/// One process: every collective is the identity.
pub struct Solo;

impl Ranks for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn sum_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn sum_f64(&self, _: &mut [f64]) -> Result<()> {
        Ok(())
    }
    fn broadcast(&self, _: &mut Vec<u8>) -> Result<()> {
        Ok(())
    }
    fn gather(&self, value: u64) -> Result<Vec<u64>> {
        Ok(vec![value])
    }
    fn abandon(&self, _: &str) {}
    fn describe(&self) -> String {
        "1 process".into()
    }
}

/// Ranks as threads of one process, exchanging through shared memory. Sums add the ranks'
/// values in rank order, so every rank gets bit-identical results.
pub struct Threads {
    rank: usize,
    shared: Arc<Exchange>,
}

struct Exchange {
    size: usize,
    state: Mutex<Round>,
    turned: Condvar,
}

#[derive(Default)]
struct Round {
    /// Rounds completed; a rank waits for this to pass the round it joined.
    number: u64,
    slots: Vec<Option<Vec<u8>>>,
    arrived: usize,
    /// The last completed round's contributions, in rank order.
    last: Arc<Vec<Vec<u8>>>,
    failed: Option<String>,
}

impl Threads {
    /// `size` ranks, one to move into each thread.
    pub fn group(size: usize) -> Vec<Threads> {
        let shared = Arc::new(Exchange {
            size,
            state: Mutex::new(Round {
                slots: vec![None; size],
                ..Round::default()
            }),
            turned: Condvar::new(),
        });
        (0..size)
            .map(|rank| Threads {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }

    /// Every rank's bytes, in rank order, once all have given theirs.
    fn exchange(&self, mine: Vec<u8>) -> Result<Arc<Vec<Vec<u8>>>> {
        let ex = &self.shared;
        let mut round = ex.state.lock().expect("ranks");
        if let Some(why) = &round.failed {
            bail!("another rank failed: {why}");
        }
        let joined = round.number;
        round.slots[self.rank] = Some(mine);
        round.arrived += 1;
        if round.arrived == ex.size {
            let all = round.slots.iter_mut().map(|s| s.take().unwrap_or_default());
            round.last = Arc::new(all.collect());
            round.arrived = 0;
            round.number += 1;
            ex.turned.notify_all();
        } else {
            while round.number == joined {
                if let Some(why) = &round.failed {
                    bail!("another rank failed: {why}");
                }
                round = ex.turned.wait(round).expect("ranks");
            }
        }
        Ok(round.last.clone())
    }

    /// Element-wise sums through [`Threads::exchange`], added in rank order.
    fn sum<T, const N: usize>(
        &self,
        values: &mut [T],
        to_bytes: fn(T) -> [u8; N],
        from_bytes: fn([u8; N]) -> T,
    ) -> Result<()>
    where
        T: Copy + Default + std::ops::AddAssign,
    {
        let all = self.exchange(values.iter().flat_map(|&v| to_bytes(v)).collect())?;
        values.fill(T::default());
        for theirs in all.iter() {
            for (v, b) in values.iter_mut().zip(theirs.chunks_exact(N)) {
                *v += from_bytes(b.try_into().expect("N bytes"));
            }
        }
        Ok(())
    }
}

impl Ranks for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn sum_f32(&self, values: &mut [f32]) -> Result<()> {
        self.sum(values, f32::to_le_bytes, f32::from_le_bytes)
    }
    fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
        self.sum(values, f64::to_le_bytes, f64::from_le_bytes)
    }
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()> {
        let all = self.exchange(if self.rank == 0 {
            bytes.clone()
        } else {
            vec![]
        })?;
        *bytes = all[0].clone();
        Ok(())
    }
    fn gather(&self, value: u64) -> Result<Vec<u64>> {
        let all = self.exchange(value.to_le_bytes().to_vec())?;
        Ok(all
            .iter()
            .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")))
            .collect())
    }
    fn abandon(&self, why: &str) {
        let mut round = self.shared.state.lock().expect("ranks");
        round.failed = Some(format!("rank {}: {why}", self.rank));
        self.shared.turned.notify_all();
    }
    fn describe(&self) -> String {
        format!("{} ranks (threads)", self.shared.size)
    }
}

/// Environment variables by which MPI launchers (OpenMPI's mpirun, PMIx under Slurm's
/// srun, MPICH's Hydra) tell a process it is one rank of several.
const LAUNCHER_SIZE: [&str; 3] = ["OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "PMI_SIZE"];

/// How many ranks the launcher started, if this process was started by one.
pub fn launched() -> Option<usize> {
    let size = LAUNCHER_SIZE
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok());
    // srun's PMIx sets PMIX_RANK but not always a size; Slurm says it.
    size.or_else(|| {
        std::env::var_os("PMIX_RANK")?;
        std::env::var("SLURM_NTASKS").ok()?.parse().ok()
    })
}

/// The ranks this process belongs to: MPI's world when a launcher started several (and
/// this build has the `mpi` feature), else [`Solo`].
pub fn from_environment() -> Result<Rc<dyn Ranks>> {
    match launched() {
        None | Some(0 | 1) => Ok(Rc::new(Solo)),
        Some(n) => open_mpi(n),
    }
}

#[cfg(not(feature = "mpi"))]
fn open_mpi(n: usize) -> Result<Rc<dyn Ranks>> {
    bail!(
        "started as one of {n} MPI ranks, but this easel was built without MPI: every rank \
         would train the run alone and overwrite the others' files. Build it with \
         `cargo build --release --features mpi` (needs OpenMPI's libopenmpi-dev and \
         libclang-dev; scripts/mpi_setup.sh installs them), or run one process."
    )
}

#[cfg(feature = "mpi")]
fn open_mpi(_: usize) -> Result<Rc<dyn Ranks>> {
    Ok(Rc::new(mpi_world::World::open()?))
}

#[cfg(feature = "mpi")]
mod mpi_world {
    use anyhow::{bail, Result};
    use mpi::collective::SystemOperation;
    use mpi::environment::Universe;
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::*;

    /// MPI's world communicator (rsmpi over the system's MPI library).
    pub(super) struct World {
        // Finalises MPI when dropped, after the communicators.
        #[cfg(feature = "nccl")]
        nccl: std::cell::OnceCell<super::nccl::Nccl>,
        world: SimpleCommunicator,
        _universe: Universe,
        local: usize,
        local_rank: usize,
    }

    impl World {
        pub(super) fn open() -> Result<Self> {
            let Some(universe) = mpi::initialize() else {
                bail!("MPI was already initialised in this process");
            };
            abort_on_panic();
            let world = universe.world();
            let machine = world.split_shared(world.rank());
            let (local, local_rank) = (machine.size() as usize, machine.rank() as usize);
            spread_threads(local);
            Ok(World {
                #[cfg(feature = "nccl")]
                nccl: std::cell::OnceCell::new(),
                world,
                _universe: universe,
                local,
                local_rank,
            })
        }
    }

    /// Ranks on one machine share its cores: each gets its part (unless the person set
    /// RAYON_NUM_THREADS), so N ranks × all cores do not fight over them. Through rayon's
    /// global pool, which every parallel loop here runs on (set before its first use; no
    /// environment variable is written while MPI's threads run).
    fn spread_threads(local: usize) {
        if std::env::var_os("RAYON_NUM_THREADS").is_some() || local <= 1 {
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mine = (cores / local).max(1);
        // Fails only if the pool already exists; it then keeps its size.
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(mine)
            .build_global();
    }

    /// A panic on one rank ends every rank: unwinding would finalise MPI, which waits for
    /// ranks that are waiting for this one, and the job would never end.
    fn abort_on_panic() {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            // SAFETY: MPI is initialised (this hook is installed after it) and the world
            // communicator is a constant of the library.
            unsafe { mpi::ffi::MPI_Abort(mpi::ffi::RSMPI_COMM_WORLD, 101) };
        }));
    }

    impl super::Ranks for World {
        fn rank(&self) -> usize {
            self.world.rank() as usize
        }
        fn size(&self) -> usize {
            self.world.size() as usize
        }
        fn sum_f32(&self, values: &mut [f32]) -> Result<()> {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
            Ok(())
        }
        fn sum_f64(&self, values: &mut [f64]) -> Result<()> {
            let send = values.to_vec();
            self.world
                .all_reduce_into(&send[..], values, SystemOperation::sum());
            Ok(())
        }
        fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()> {
            let root = self.world.process_at_rank(0);
            let mut len = bytes.len() as u64;
            root.broadcast_into(&mut len);
            bytes.resize(len as usize, 0);
            root.broadcast_into(&mut bytes[..]);
            Ok(())
        }
        fn gather(&self, value: u64) -> Result<Vec<u64>> {
            let mut all = vec![0u64; self.size()];
            self.world.all_gather_into(&value, &mut all[..]);
            Ok(all)
        }
        fn barrier(&self) -> Result<()> {
            self.world.barrier();
            Ok(())
        }
        fn local_rank(&self) -> usize {
            self.local_rank
        }
        #[cfg(feature = "nccl")]
        fn sum_on_device(&self, t: &candle_core::Tensor) -> Result<Option<candle_core::Tensor>> {
            let candle_core::Device::Cuda(gpu) = t.device() else {
                return Ok(None);
            };
            if self.nccl.get().is_none() {
                // The first GPU sum: NCCL's id travels from rank 0 over MPI.
                let nccl = super::nccl::Nccl::open(self, gpu)?;
                let _ = self.nccl.set(nccl);
            }
            let nccl = self.nccl.get().expect("opened above");
            Ok(Some(nccl.sum(t)?))
        }
        fn abandon(&self, why: &str) {
            eprintln!("rank {}: {why}; ending every rank", self.rank());
            self.world.abort(1)
        }
        fn describe(&self) -> String {
            format!(
                "MPI, {} ranks ({} on this machine)",
                self.world.size(),
                self.local
            )
        }
    }
}

/// Sums over ranks on the GPUs themselves, through NCCL (the `nccl` feature: MPI starts
/// the ranks and carries NCCL's id; the gradients never leave the GPUs).
#[cfg(feature = "nccl")]
mod nccl {
    use std::rc::Rc;

    use anyhow::{anyhow, Result};
    use candle_core::backend::BackendStorage;
    use candle_core::cuda::cudarc::nccl::{Comm, Id, ReduceOp};
    use candle_core::cuda::{CudaDevice, CudaStorage};
    use candle_core::{CpuStorage, CustomOp1, Layout, Shape, Tensor};

    pub(super) struct Nccl {
        comm: Rc<Comm>,
    }

    impl Nccl {
        pub(super) fn open(ranks: &dyn super::Ranks, gpu: &CudaDevice) -> Result<Self> {
            let mut id = Vec::new();
            if ranks.rank() == 0 {
                let made = Id::new().map_err(|e| anyhow!("NCCL: no unique id ({e:?})"))?;
                id = made.internal().iter().map(|&c| c as u8).collect();
            }
            ranks.broadcast(&mut id)?;
            let bytes: [u8; 128] = id
                .as_slice()
                .try_into()
                .map_err(|_| anyhow!("NCCL: an id of {} bytes from rank 0", id.len()))?;
            let id = Id::uninit(bytes.map(|b| b as std::ffi::c_char));
            let comm = Comm::from_rank(gpu.cuda_stream(), ranks.rank(), ranks.size(), id)
                .map_err(|e| anyhow!("NCCL: rank {} could not join ({e:?})", ranks.rank()))?;
            Ok(Nccl {
                comm: Rc::new(comm),
            })
        }

        /// `t` (contiguous f32 on this rank's GPU) summed over the ranks.
        pub(super) fn sum(&self, t: &Tensor) -> Result<Tensor> {
            Ok(t.contiguous()?.apply_op1_no_bwd(&AllReduce {
                comm: self.comm.clone(),
            })?)
        }
    }

    struct AllReduce {
        comm: Rc<Comm>,
    }

    impl CustomOp1 for AllReduce {
        fn name(&self) -> &'static str {
            "nccl-all-reduce-sum"
        }

        fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
            candle_core::bail!("NCCL sums tensors on GPUs, not on the CPU")
        }

        fn cuda_fwd(
            &self,
            s: &CudaStorage,
            l: &Layout,
        ) -> candle_core::Result<(CudaStorage, Shape)> {
            let n = l.shape().elem_count();
            let (start, end) = l
                .contiguous_offsets()
                .ok_or_else(|| candle_core::Error::Msg("NCCL: a strided tensor".into()))?;
            let dev = s.device().clone();
            let src = s.as_cuda_slice::<f32>()?.slice(start..end);
            let mut dst = dev.alloc_zeros::<f32>(n)?;
            self.comm
                .all_reduce(&src, &mut dst, &ReduceOp::Sum)
                .map_err(|e| candle_core::Error::Msg(format!("NCCL all-reduce: {e:?}")))?;
            Ok((CudaStorage::wrap_cuda_slice(dst, dev), l.shape().clone()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_cover_the_batch_once_in_order() {
        for batch in [1, 2, 5, 8, 64, 65] {
            for size in 1..=4usize {
                let parts: Vec<_> = (0..size).map(|r| rows(batch, r, size)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[size - 1].end, batch);
                for w in parts.windows(2) {
                    assert_eq!(w[0].end, w[1].start);
                    assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
                }
            }
        }
        assert_eq!(rows(5, 0, 2), 0..3);
        assert_eq!(rows(5, 1, 2), 3..5);
    }

    #[test]
    fn thread_ranks_sum_broadcast_and_gather_alike() {
        let handles: Vec<_> = Threads::group(3)
            .into_iter()
            .map(|r| {
                std::thread::spawn(move || {
                    let k = r.rank() as f32;
                    let mut v = vec![k, 1.0, 0.1 * k];
                    r.sum_f32(&mut v).unwrap();
                    let mut bytes = format!("from {}", r.rank()).into_bytes();
                    r.broadcast(&mut bytes).unwrap();
                    let ids = r.gather(10 + r.rank() as u64).unwrap();
                    r.barrier().unwrap();
                    (v, bytes, ids)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        for (v, bytes, ids) in &results {
            assert_eq!(v, &results[0].0, "every rank gets the same sum");
            assert_eq!(v[..2], [3.0, 3.0]);
            assert_eq!(bytes, b"from 0");
            assert_eq!(ids, &[10, 11, 12]);
        }
    }

    #[test]
    fn a_rank_that_gives_up_frees_the_others_with_an_error() {
        let mut group = Threads::group(2);
        let second = group.pop().unwrap();
        let first = group.pop().unwrap();
        let waiting = std::thread::spawn(move || first.barrier());
        std::thread::sleep(std::time::Duration::from_millis(20));
        second.abandon("disk full");
        let err = waiting.join().unwrap().unwrap_err().to_string();
        assert!(err.contains("rank 1: disk full"), "{err}");
    }
}
