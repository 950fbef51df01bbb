//! A cache of large freed blocks in front of the global allocator.
//!
//! Training allocates the same big tensors every step (activations, gradients, im2col
//! buffers: megabytes each) and frees them before the next step. Returned to the OS and
//! touched again, each costs page faults and the kernel zeroing fresh pages, which was 17%
//! of the 64x64 DCGAN step even with mimalloc told never to purge. Like PyTorch's CPU
//! caching, this keeps freed blocks of 1 MiB and more (up to 2 GiB in all) and hands them
//! back out for requests of exactly the same size. Smaller blocks go straight through.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, Ordering};

/// Blocks at least this big are cached.
const MIN_SIZE: usize = 1 << 20;
/// Cached blocks are allocated with this alignment, so any of them serves any request
/// of its size with an alignment up to this (larger alignments bypass the cache).
const ALIGN: usize = 4096;
const SLOTS: usize = 256;
/// At most this many bytes are held in the cache.
const MAX_CACHED: usize = 2 << 30;

pub struct BlockCache<A> {
    inner: A,
    lock: AtomicBool,
    slots: UnsafeCell<Slots>,
}

struct Slots {
    sizes: [usize; SLOTS],
    ptrs: [*mut u8; SLOTS],
    /// Round-robin victim when every slot is taken.
    next_victim: usize,
    bytes: usize,
}

// The slots are only touched with `lock` held.
unsafe impl<A: Sync> Sync for BlockCache<A> {}

impl<A> BlockCache<A> {
    pub const fn new(inner: A) -> Self {
        BlockCache {
            inner,
            lock: AtomicBool::new(false),
            slots: UnsafeCell::new(Slots {
                sizes: [0; SLOTS],
                ptrs: [std::ptr::null_mut(); SLOTS],
                next_victim: 0,
                bytes: 0,
            }),
        }
    }

    fn with_slots<R>(&self, f: impl FnOnce(&mut Slots) -> R) -> R {
        while self
            .lock
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held, so this is the only reference.
        let r = f(unsafe { &mut *self.slots.get() });
        self.lock.store(false, Ordering::Release);
        r
    }
}

impl<A> BlockCache<A> {
    /// A cached block of exactly `size` bytes, if one is held.
    fn take(&self, size: usize) -> Option<*mut u8> {
        self.with_slots(|s| {
            let i = s.sizes.iter().position(|&n| n == size)?;
            s.sizes[i] = 0;
            s.bytes -= size;
            Some(std::mem::replace(&mut s.ptrs[i], std::ptr::null_mut()))
        })
    }
}

fn cached(layout: Layout) -> bool {
    layout.size() >= MIN_SIZE && layout.align() <= ALIGN
}

fn block_layout(size: usize) -> Layout {
    // Sizes here are ≥ 1 MiB and came from a valid Layout: this cannot fail.
    Layout::from_size_align(size, ALIGN).expect("a valid block layout")
}

unsafe impl<A: GlobalAlloc> GlobalAlloc for BlockCache<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !cached(layout) {
            return unsafe { self.inner.alloc(layout) };
        }
        let size = layout.size();
        match self.take(size) {
            Some(p) => p,
            None => unsafe { self.inner.alloc(block_layout(size)) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !cached(layout) {
            return unsafe { self.inner.alloc_zeroed(layout) };
        }
        let size = layout.size();
        match self.take(size) {
            Some(p) => {
                unsafe { std::ptr::write_bytes(p, 0, size) };
                p
            }
            // Fresh memory: the inner allocator knows when it is zero already.
            None => unsafe { self.inner.alloc_zeroed(block_layout(size)) },
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if !cached(layout) {
            return unsafe { self.inner.dealloc(ptr, layout) };
        }
        let size = layout.size();
        // Keep it, evicting one older block (round robin) if the slots or the budget are
        // full; if that is still not enough, let this one go too.
        let to_free = self.with_slots(|s| {
            let mut free: [Option<(*mut u8, usize)>; 2] = [None, None];
            let full = |s: &Slots| s.bytes + size > MAX_CACHED || !s.sizes.contains(&0);
            if full(s) {
                let i = s.next_victim;
                s.next_victim = (i + 1) % SLOTS;
                if s.sizes[i] != 0 {
                    free[0] = Some((s.ptrs[i], s.sizes[i]));
                    s.bytes -= s.sizes[i];
                    s.sizes[i] = 0;
                    s.ptrs[i] = std::ptr::null_mut();
                }
            }
            if full(s) {
                free[1] = Some((ptr, size));
            } else {
                let i = s.sizes.iter().position(|&n| n == 0).expect("a free slot");
                s.sizes[i] = size;
                s.ptrs[i] = ptr;
                s.bytes += size;
            }
            free
        });
        for (p, n) in to_free.into_iter().flatten() {
            unsafe { self.inner.dealloc(p, block_layout(n)) };
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align(new_size, layout.align());
        match new_layout {
            // Neither side cached: let the inner allocator grow in place if it can.
            Ok(new) if !cached(layout) && !cached(new) => unsafe {
                self.inner.realloc(ptr, layout, new_size)
            },
            Ok(new) => unsafe {
                let fresh = self.alloc(new);
                if !fresh.is_null() {
                    std::ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                    self.dealloc(ptr, layout);
                }
                fresh
            },
            Err(_) => std::ptr::null_mut(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn a_freed_large_block_is_handed_out_again_for_the_same_size() {
        let cache = BlockCache::new(System);
        let big = Layout::from_size_align(3 << 20, 8).unwrap();
        unsafe {
            let a = cache.alloc(big);
            a.write(7);
            cache.dealloc(a, big);
            let b = cache.alloc(big);
            assert_eq!(a, b, "same block back");
            // Another size is not served from it.
            let other = Layout::from_size_align(4 << 20, 8).unwrap();
            cache.dealloc(b, big);
            let c = cache.alloc(other);
            assert_ne!(c, a);
            // Zeroed requests are zeroed even when cached.
            let z = cache.alloc_zeroed(big);
            assert_eq!(z, a);
            assert!(std::slice::from_raw_parts(z, big.size())
                .iter()
                .all(|&x| x == 0));
            cache.dealloc(z, big);
            cache.dealloc(c, other);
        }
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_slots() {
        let cache = BlockCache::new(System);
        let layout = |k: usize| Layout::from_size_align((1 << 20) + k * 4096, 8).unwrap();
        unsafe {
            let blocks: Vec<_> = (0..SLOTS + 10)
                .map(|k| (cache.alloc(layout(k)), k))
                .collect();
            for (p, k) in blocks {
                cache.dealloc(p, layout(k));
            }
            cache.with_slots(|s| {
                assert!(s.bytes <= MAX_CACHED);
                let held: usize = s.sizes.iter().sum();
                assert_eq!(held, s.bytes);
            });
            // Growing a block keeps its bytes.
            let small = Layout::from_size_align(1000, 8).unwrap();
            let p = cache.alloc(small);
            std::ptr::write_bytes(p, 9, 1000);
            let q = cache.realloc(p, small, 2 << 20);
            assert!(std::slice::from_raw_parts(q, 1000).iter().all(|&x| x == 9));
            cache.dealloc(q, Layout::from_size_align(2 << 20, 8).unwrap());
        }
    }
}
