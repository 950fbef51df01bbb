//! The run's image cache: training images as u8, channel-major, one after another, in a
//! file that is memory-mapped, so a folder of any size costs pages the OS can drop rather
//! than heap.
//!
//! ```text
//! 0   "EASELDC1"  u32 version  u32 channels  u32 size  u32 0  u64 count  u64 key
//!     u64 manifest offset  u64 manifest length          (little-endian, padded to 64)
//! 64  count × channels × size × size bytes of pixels
//!     manifest: JSON (labels, classes, the data report)
//! ```

use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use memmap2::Mmap;

const MAGIC: &[u8; 8] = b"EASELDC1";
const VERSION: u32 = 1;
const HEADER: u64 = 64;

/// What the cache was built from; a cache is used only when all of it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub channels: usize,
    pub size: usize,
    /// Hash of the file list with lengths and mtimes, the fit and the background.
    pub key: u64,
}

impl Shape {
    fn image_len(&self) -> u64 {
        (self.channels * self.size * self.size) as u64
    }
}

/// A mapped cache: the pixels and the manifest stored with them.
pub struct Mapped {
    map: Mmap,
    count: usize,
    image_len: usize,
}

impl Mapped {
    pub fn pixels(&self) -> &[u8] {
        &self.map[HEADER as usize..HEADER as usize + self.count * self.image_len]
    }
}

/// Opens the cache at `path` if it holds images of `shape`; `Ok(None)` with the reason when
/// it must be (re)built.
pub fn open<M: serde::de::DeserializeOwned>(
    path: &Path,
    shape: Shape,
) -> Result<std::result::Result<(Mapped, M), String>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Err("no cache yet".into()))
        }
        Err(e) => return Ok(Err(format!("cannot open the cache: {e}"))),
    };
    // Safety: the cache is only ever replaced by renaming a new file over it, never
    // written in place, so the mapped bytes do not change under us.
    let map =
        unsafe { Mmap::map(&file) }.with_context(|| format!("cannot map {}", path.display()))?;
    let u32_at = |o: usize| u32::from_le_bytes(map[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(map[o..o + 8].try_into().expect("8 bytes"));
    if map.len() < HEADER as usize || &map[..8] != MAGIC || u32_at(8) != VERSION {
        return Ok(Err("the cache is from another easel version".into()));
    }
    if u32_at(12) as usize != shape.channels || u32_at(16) as usize != shape.size {
        return Ok(Err(
            "the cache holds another image size or channel count".into()
        ));
    }
    if u64_at(32) != shape.key {
        return Ok(Err(
            "the pictures, the fit or the background changed since the cache was built".into(),
        ));
    }
    let count = u64_at(24);
    let (offset, len) = (u64_at(40), u64_at(48));
    let pixels_end = count
        .checked_mul(shape.image_len())
        .and_then(|n| n.checked_add(HEADER));
    if pixels_end != Some(offset) || offset.checked_add(len) != Some(map.len() as u64) {
        return Ok(Err("the cache is cut short".into()));
    }
    let manifest: M = match serde_json::from_slice(&map[offset as usize..]) {
        Ok(m) => m,
        Err(e) => return Ok(Err(format!("the cache's manifest is unreadable: {e}"))),
    };
    Ok(Ok((
        Mapped {
            map,
            count: count as usize,
            image_len: shape.image_len() as usize,
        },
        manifest,
    )))
}

/// Writes a cache next to its final path and renames it into place when finished, so a
/// cache that exists is complete.
pub struct Writer {
    file: BufWriter<File>,
    tmp: PathBuf,
    path: PathBuf,
    shape: Shape,
    count: u64,
}

impl Writer {
    pub fn create(path: &Path, shape: Shape) -> Result<Self> {
        let tmp = path.with_extension("cache.partial");
        let file =
            File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
        let mut file = BufWriter::with_capacity(1 << 20, file);
        file.write_all(&[0; HEADER as usize])?;
        Ok(Writer {
            file,
            tmp,
            path: path.to_path_buf(),
            shape,
            count: 0,
        })
    }

    pub fn push(&mut self, image: &[u8]) -> Result<()> {
        if image.len() as u64 != self.shape.image_len() {
            bail!("internal: image of {} bytes in the cache", image.len());
        }
        self.file
            .write_all(image)
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        self.count += 1;
        Ok(())
    }

    /// Drops the unfinished file.
    pub fn abandon(self) {
        let tmp = self.tmp.clone();
        drop(self.file);
        let _ = std::fs::remove_file(tmp);
    }

    /// Writes the manifest and header, puts the file in place and maps it.
    pub fn finish<M: serde::Serialize>(mut self, manifest: &M) -> Result<Mapped> {
        let json = serde_json::to_vec(manifest)?;
        let offset = HEADER + self.count * self.shape.image_len();
        self.file.write_all(&json)?;
        let mut header = Vec::with_capacity(HEADER as usize);
        header.extend_from_slice(MAGIC);
        for v in [
            VERSION,
            self.shape.channels as u32,
            self.shape.size as u32,
            0,
        ] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        for v in [self.count, self.shape.key, offset, json.len() as u64] {
            header.extend_from_slice(&v.to_le_bytes());
        }
        header.resize(HEADER as usize, 0);
        self.file.seek(SeekFrom::Start(0))?;
        self.file.write_all(&header)?;
        let file = self
            .file
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.tmp.display()))?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&self.tmp, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        let file = File::open(&self.path)?;
        // Safety: as in `open`.
        let map = unsafe { Mmap::map(&file) }
            .with_context(|| format!("cannot map {}", self.path.display()))?;
        Ok(Mapped {
            map,
            count: self.count as usize,
            image_len: self.shape.image_len() as usize,
        })
    }
}
