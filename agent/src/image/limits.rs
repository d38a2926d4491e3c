//! How far a layer may expand while it is unpacked (berthd.yaml `image:`): its size, its
//! expansion ratio and its entry count, so that a tar bomb or a sparse-file bomb is stopped early
//! instead of filling the disk or spinning for hours. Runs in berthd and the CLI, inside the
//! unpacker's blocking thread; the decision is the pure [`UnpackLimits::exceeded`].

use std::cell::Cell;
use std::io::{self, BufRead, Read};
use std::rc::Rc;

/// The ratio is judged once this much has been expanded: a small layer of zeros or text may
/// compress far better than a large one ever does, and costs nothing to unpack.
pub const RATIO_FLOOR: u64 = 64 << 20;

/// Limits on one layer. Defaults: 64 GiB, 1000:1 (gzip cannot exceed about 1030:1; zstd bombs
/// reach millions), one million entries (large images hold a few hundred thousand files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes a layer may expand to: its uncompressed tar stream, and the sum of its files' sizes
    /// (the holes of sparse files included).
    pub max_layer_size: u64,
    /// Uncompressed bytes per compressed byte, judged past [`RATIO_FLOOR`].
    pub max_expansion_ratio: u64,
    /// Tar entries (files, directories, links, whiteouts).
    pub max_entries: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_layer_size: 64 << 30,
            max_expansion_ratio: 1000,
            max_entries: 1_000_000,
        }
    }
}

/// Which limit a layer went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Size,
    Ratio,
    Entries,
}

/// A limit a layer went past, with its value: the unpacker's error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{} (raise `image.{}` in berthd.yaml if the image is trusted)", self.what(), self.setting())]
pub struct Exceeded {
    pub limit: Limit,
    pub value: u64,
}

impl Exceeded {
    pub fn setting(&self) -> &'static str {
        match self.limit {
            Limit::Size => "max_layer_size",
            Limit::Ratio => "max_expansion_ratio",
            Limit::Entries => "max_entries",
        }
    }
    fn what(&self) -> String {
        match self.limit {
            Limit::Size => format!("layer expands past {} bytes", self.value),
            Limit::Ratio => format!("layer expands more than {}:1", self.value),
            Limit::Entries => format!("layer holds more than {} entries", self.value),
        }
    }
}

/// What has gone through the unpacker so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Bytes read from the blob (compressed).
    pub compressed: u64,
    /// Bytes of the uncompressed tar stream.
    pub expanded: u64,
    /// Sum of the sizes of the files seen (sparse holes included).
    pub content: u64,
    pub entries: u64,
}

impl UnpackLimits {
    /// The first limit `c` is past, if any.
    pub fn exceeded(&self, c: &Counts) -> Option<Exceeded> {
        let at = |limit, value| Some(Exceeded { limit, value });
        if c.expanded.max(c.content) > self.max_layer_size {
            return at(Limit::Size, self.max_layer_size);
        }
        if c.expanded > RATIO_FLOOR && c.expanded / c.compressed.max(1) >= self.max_expansion_ratio
        {
            return at(Limit::Ratio, self.max_expansion_ratio);
        }
        if c.entries > self.max_entries {
            return at(Limit::Entries, self.max_entries);
        }
        None
    }
}

/// The counts, shared by the readers of one unpack (one thread) and the unpacker's loop. Once a
/// limit is past, every read fails: whatever the tar reader makes of that error, the unpacker
/// reports [`Meter::tripped`].
#[derive(Debug, Clone)]
pub struct Meter {
    limits: UnpackLimits,
    counts: Rc<Cell<Counts>>,
    tripped: Rc<Cell<Option<Exceeded>>>,
}

impl Meter {
    pub fn new(limits: UnpackLimits) -> Meter {
        Meter {
            limits,
            counts: Rc::default(),
            tripped: Rc::default(),
        }
    }

    /// The limit that was past, if one was.
    pub fn tripped(&self) -> Option<Exceeded> {
        self.tripped.get()
    }

    /// Adds to the counts and judges them.
    pub fn add(&self, f: impl FnOnce(&mut Counts)) -> Result<(), Exceeded> {
        if let Some(e) = self.tripped.get() {
            return Err(e);
        }
        let mut c = self.counts.get();
        f(&mut c);
        self.counts.set(c);
        match self.limits.exceeded(&c) {
            Some(e) => {
                self.tripped.set(Some(e));
                Err(e)
            }
            None => Ok(()),
        }
    }

    /// Counts what `inner` yields into `field`.
    pub fn reader<R: Read>(&self, inner: R, field: fn(&mut Counts) -> &mut u64) -> Metered<R> {
        Metered {
            inner,
            meter: self.clone(),
            field,
        }
    }
}

/// A buffered reader whose bytes count as the decompressor consumes them (not as they are read
/// ahead), so that the ratio is judged on what was actually expanded.
pub struct Consumed<R> {
    inner: R,
    meter: Meter,
}

impl Meter {
    /// Counts what is consumed of `inner` as compressed bytes.
    pub fn consumed<R: BufRead>(&self, inner: R) -> Consumed<R> {
        Consumed {
            inner,
            meter: self.clone(),
        }
    }
}

impl<R: BufRead> Read for Consumed<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.meter
            .add(|c| c.compressed += n as u64)
            .map_err(io::Error::other)?;
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Consumed<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }
    fn consume(&mut self, n: usize) {
        self.inner.consume(n);
        // a limit past here is reported by the next read of the expanded stream
        let _ = self.meter.add(|c| c.compressed += n as u64);
    }
}

/// A reader counted by a [`Meter`].
pub struct Metered<R> {
    inner: R,
    meter: Meter,
    field: fn(&mut Counts) -> &mut u64,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = self.meter.tripped() {
            return Err(io::Error::other(e));
        }
        let n = self.inner.read(buf)?;
        let field = self.field;
        self.meter
            .add(|c| *field(c) += n as u64)
            .map_err(io::Error::other)?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_and_its_setting() {
        let l = UnpackLimits {
            max_layer_size: 1 << 30,
            max_expansion_ratio: 100,
            max_entries: 10,
        };
        let ok = Counts {
            compressed: 1 << 20,
            expanded: 90 << 20,
            content: 80 << 20,
            entries: 10,
        };
        assert_eq!(l.exceeded(&ok), None);
        let size = l.exceeded(&Counts {
            content: (1 << 30) + 1,
            ..ok
        });
        assert_eq!(size.map(|e| e.setting()), Some("max_layer_size"));
        assert_eq!(
            l.exceeded(&Counts {
                expanded: (1 << 30) + 1,
                compressed: 1 << 30,
                ..ok
            })
            .map(|e| e.limit),
            Some(Limit::Size),
            "the stream counts as well as the files"
        );
        let ratio = l.exceeded(&Counts {
            expanded: 100 << 20,
            ..ok
        });
        assert_eq!(ratio.map(|e| e.limit), Some(Limit::Ratio));
        assert!(
            ratio
                .unwrap()
                .to_string()
                .contains("more than 100:1 (raise `image.max_expansion_ratio`")
        );
        // below the floor, any ratio passes
        assert_eq!(
            l.exceeded(&Counts {
                compressed: 1,
                expanded: RATIO_FLOOR,
                ..ok
            }),
            None
        );
        let entries = l.exceeded(&Counts { entries: 11, ..ok });
        assert_eq!(entries.map(|e| e.setting()), Some("max_entries"));
    }

    #[test]
    fn a_metered_reader_fails_once_past_and_stays_failed() {
        let m = Meter::new(UnpackLimits {
            max_layer_size: 10,
            ..UnpackLimits::default()
        });
        let mut r = m.reader(&[0u8; 64][..], |c| &mut c.expanded);
        let mut buf = [0u8; 8];
        assert_eq!(r.read(&mut buf).unwrap(), 8);
        assert!(r.read(&mut buf).is_err());
        assert_eq!(m.tripped().map(|e| e.limit), Some(Limit::Size));
        assert!(m.add(|c| c.entries += 1).is_err());
    }
}
