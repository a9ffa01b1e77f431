//! The boot counter in flash ([`BootStore`] for the core's [`start_boot`]), safe against power
//! loss at any instant and light on wear.
//!
//! # Layout
//!
//! Two erase sectors chosen by the board (A and B, see each board's README section). Each is a
//! log of records written one after another from the sector start:
//!
//! ```text
//! record = boot: u32 LE | !boot: u32 LE | 0xFF padding up to the flash's write size
//! erased slot = all bytes 0xFF
//! ```
//!
//! - `load`: the largest valid record in either sector (`None` if there is none).
//! - `store(n)`: appended after the last used slot of the sector that holds the largest record.
//!   When that sector is full, the other one is erased and `n` becomes its first record; the
//!   full sector keeps the older values until the next switch erases it.
//!
//! # Power loss
//!
//! - During an append: NOR programming only clears bits, so a torn record can only read as the
//!   complete record or as an invalid one (its two words are no longer complements); never as
//!   another valid number. `load` then returns the new or the previous value, and later
//!   appends go after the torn slot.
//! - During the erase at a switch: the full sector still holds the largest value, so `load` is
//!   unchanged and the next `store` erases again.
//!
//! In every case the value `start_boot` read back (and so used) is the largest in flash, and
//! the next boot gets a larger one: a boot number is never reused.
//!
//! Wear: one erase per `sector size / record size` boots per sector (2048 boots for a 16 KiB
//! sector and 8-byte records).
//!
//! [`start_boot`]: sensor_node_core::start_boot

use embedded_storage::nor_flash::NorFlash;
use sensor_node_core::BootStore;

/// Largest flash write size supported (a record is padded to the write size).
const MAX_WRITE: usize = 32;
/// Bytes read per flash read while scanning.
const CHUNK: usize = 64;

/// One erase sector: `offset` and `len` in bytes, as the flash driver counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Sector {
    /// Start, from the driver's offset 0.
    pub offset: u32,
    /// Length in bytes (one erase unit).
    pub len: u32,
}

/// The two sectors are unusable for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct LayoutError;

/// The boot counter in two flash sectors; see the module docs.
#[derive(Debug)]
pub struct FlashBootStore<F> {
    flash: F,
    sectors: [Sector; 2],
}

/// What a scan of one sector found.
#[derive(Debug, Clone, Copy, Default)]
struct Scan {
    /// Largest valid record.
    max: Option<u32>,
    /// Slot after the last slot that is not erased (where the next record goes).
    append_at: u32,
}

impl<F: NorFlash> FlashBootStore<F> {
    /// Bytes per record: 8, padded to the flash's write size.
    const RECORD: u32 = {
        assert!(F::WRITE_SIZE <= MAX_WRITE && MAX_WRITE.is_multiple_of(F::WRITE_SIZE));
        assert!(CHUNK.is_multiple_of(MAX_WRITE));
        if F::WRITE_SIZE > 8 {
            F::WRITE_SIZE as u32
        } else {
            8
        }
    };

    /// A store over `sectors` of `flash`. The sectors must be distinct, non-empty, hold whole
    /// records and be erase units of the driver; their previous content is kept if it is a
    /// valid log, otherwise the next [`BootStore::store`] erases it.
    pub fn new(flash: F, sectors: [Sector; 2]) -> Result<Self, LayoutError> {
        let [a, b] = sectors;
        let fits = |s: Sector| {
            s.len >= Self::RECORD
                && s.offset.is_multiple_of(Self::RECORD)
                && s.len.is_multiple_of(CHUNK as u32)
                && s.offset.checked_add(s.len).is_some()
        };
        let disjoint = a.offset.saturating_add(a.len) <= b.offset
            || b.offset.saturating_add(b.len) <= a.offset;
        if fits(a) && fits(b) && disjoint {
            Ok(Self { flash, sectors })
        } else {
            Err(LayoutError)
        }
    }

    /// Gives the flash back.
    pub fn into_inner(self) -> F {
        self.flash
    }

    fn scan(&mut self, sector: Sector) -> Result<Scan, F::Error> {
        let record = Self::RECORD as usize;
        let mut scan = Scan::default();
        let mut buf = [0u8; CHUNK];
        let mut pos = 0;
        while pos < sector.len {
            self.flash.read(sector.offset + pos, &mut buf)?;
            for (i, slot) in buf.chunks_exact(record).enumerate() {
                if slot.iter().all(|&b| b == 0xFF) {
                    continue;
                }
                scan.append_at = pos + (i as u32 + 1) * Self::RECORD;
                let word = |at: usize| {
                    u32::from_le_bytes([slot[at], slot[at + 1], slot[at + 2], slot[at + 3]])
                };
                let (value, check) = (word(0), word(4));
                if value == !check {
                    scan.max = scan.max.max(Some(value));
                }
            }
            pos += CHUNK as u32;
        }
        Ok(scan)
    }

    fn write_record(&mut self, at: u32, boot: u32) -> Result<(), F::Error> {
        let mut buf = [0xFFu8; MAX_WRITE];
        buf[..4].copy_from_slice(&boot.to_le_bytes());
        buf[4..8].copy_from_slice(&(!boot).to_le_bytes());
        self.flash.write(at, &buf[..Self::RECORD as usize])
    }
}

impl<F: NorFlash> BootStore for FlashBootStore<F> {
    type Error = F::Error;

    fn load(&mut self) -> Result<Option<u32>, F::Error> {
        let a = self.scan(self.sectors[0])?;
        let b = self.scan(self.sectors[1])?;
        Ok(a.max.max(b.max))
    }

    fn store(&mut self, boot: u32) -> Result<(), F::Error> {
        let scans = [self.scan(self.sectors[0])?, self.scan(self.sectors[1])?];
        // The sector holding the largest value (A when neither holds one).
        let active = usize::from(scans[1].max > scans[0].max);
        let sector = self.sectors[active];
        let at = scans[active].append_at;
        if at + Self::RECORD <= sector.len {
            return self.write_record(sector.offset + at, boot);
        }
        let other = self.sectors[1 - active];
        crate::log::log_info!(
            "boot counter: switching to the sector at {=u32:#x}",
            other.offset
        );
        self.flash.erase(other.offset, other.offset + other.len)?;
        self.write_record(other.offset, boot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_storage::nor_flash::{ErrorType, NorFlashError, NorFlashErrorKind, ReadNorFlash};
    use sensor_node_core::start_boot;

    const SECTOR: u32 = 128;
    const SECTORS: [Sector; 2] = [
        Sector {
            offset: 0,
            len: SECTOR,
        },
        Sector {
            offset: SECTOR,
            len: SECTOR,
        },
    ];

    /// NOR flash in RAM: writes only clear bits, erases set them. After `ops_left` operations
    /// the power fails: that operation is torn (half done) and every later one fails.
    #[derive(Clone)]
    struct RamFlash {
        mem: [u8; 2 * SECTOR as usize],
        ops_left: Option<usize>,
        erases: usize,
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct PowerLost;
    impl NorFlashError for PowerLost {
        fn kind(&self) -> NorFlashErrorKind {
            NorFlashErrorKind::Other
        }
    }
    impl ErrorType for RamFlash {
        type Error = PowerLost;
    }

    impl RamFlash {
        fn new() -> Self {
            Self {
                mem: [0xFF; 2 * SECTOR as usize],
                ops_left: None,
                erases: 0,
            }
        }
        /// Whether this operation runs in full (false: torn, then dead).
        fn op(&mut self) -> Result<bool, PowerLost> {
            match &mut self.ops_left {
                None => Ok(true),
                Some(0) => Err(PowerLost),
                Some(n) => {
                    *n -= 1;
                    Ok(*n > 0)
                }
            }
        }
    }

    impl ReadNorFlash for RamFlash {
        const READ_SIZE: usize = 1;
        fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), PowerLost> {
            if self.ops_left == Some(0) {
                return Err(PowerLost);
            }
            let at = offset as usize;
            bytes.copy_from_slice(&self.mem[at..at + bytes.len()]);
            Ok(())
        }
        fn capacity(&self) -> usize {
            self.mem.len()
        }
    }

    impl NorFlash for RamFlash {
        const WRITE_SIZE: usize = 4;
        const ERASE_SIZE: usize = SECTOR as usize;
        fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), PowerLost> {
            let full = self.op()?;
            let n = if full {
                bytes.len()
            } else {
                bytes.len() / 2 + 1
            };
            for (i, b) in bytes[..n].iter().enumerate() {
                // A torn byte gets only some of its zero bits.
                let b = if full || i + 1 < n { *b } else { *b | 0x0F };
                self.mem[offset as usize + i] &= b;
            }
            if full { Ok(()) } else { Err(PowerLost) }
        }
        fn erase(&mut self, from: u32, to: u32) -> Result<(), PowerLost> {
            let full = self.op()?;
            self.erases += 1;
            let to = if full { to } else { from + (to - from) / 2 };
            self.mem[from as usize..to as usize].fill(0xFF);
            if full { Ok(()) } else { Err(PowerLost) }
        }
    }

    fn store(flash: RamFlash) -> FlashBootStore<RamFlash> {
        FlashBootStore::new(flash, SECTORS).unwrap()
    }

    #[test]
    fn counts_from_one_across_many_sector_switches() {
        let mut flash = RamFlash::new();
        for expected in 1..=200u32 {
            let mut s = store(flash);
            assert_eq!(start_boot(&mut s), Ok(expected));
            flash = s.into_inner();
        }
        // 16 records per sector: a switch (one erase) every 16 boots.
        assert_eq!(flash.erases, 200 / 16);
    }

    #[test]
    fn power_loss_at_any_operation_never_reuses_a_boot_number() {
        // Cut the power at every possible operation of a run of boots that crosses switches.
        for cut in 1..60 {
            let mut flash = RamFlash::new();
            let mut last_used = 0u32;
            for boot in 0..40 {
                if boot == 20 {
                    flash.ops_left = Some(cut);
                }
                let mut s = store(flash);
                let result = start_boot(&mut s);
                flash = s.into_inner();
                if let Ok(n) = result {
                    assert!(n > last_used, "cut {cut}: boot {n} after {last_used}");
                    last_used = n;
                }
                if flash.ops_left == Some(0) {
                    flash.ops_left = None; // power back on
                }
            }
            assert!(last_used >= 38, "cut {cut}: only reached {last_used}");
        }
    }

    #[test]
    fn garbage_in_a_fresh_sector_is_skipped() {
        let mut flash = RamFlash::new();
        flash.mem[..8].copy_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut s = store(flash);
        assert_eq!(start_boot(&mut s), Ok(1));
        assert_eq!(start_boot(&mut s), Ok(2));
    }

    #[test]
    fn bad_layouts_are_refused() {
        let overlap = [
            SECTORS[0],
            Sector {
                offset: 64,
                len: SECTOR,
            },
        ];
        assert!(FlashBootStore::new(RamFlash::new(), overlap).is_err());
        let unaligned = [
            SECTORS[0],
            Sector {
                offset: SECTOR + 4,
                len: 64,
            },
        ];
        assert!(FlashBootStore::new(RamFlash::new(), unaligned).is_err());
    }
}
