//! The virtual board's non-volatile memory: a file on the host, reached through semihosting,
//! behaving as NOR flash (erase sets 0xFF, a write can only clear bits), so the boot counter
//! code is the same one the real boards run on their flash. Killing QEMU is a power cut: what
//! was written stays; a new board is a new file.

use core::ffi::CStr;
use cortex_m_semihosting::syscall;
use embedded_storage::nor_flash::{
    ErrorType, NorFlash, NorFlashError, NorFlashErrorKind, ReadNorFlash, check_erase, check_read,
    check_write,
};

/// Semihosting OPEN modes (ISO C fopen): existing file for update, or created empty.
const MODE_READ_WRITE: usize = 3; // "r+b"
const MODE_CREATE: usize = 7; // "w+b"
/// Bytes moved per host call.
const CHUNK: usize = 256;

/// A host call failed, or an access was out of bounds or misaligned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashError {
    /// The host refused to open, read or write the file.
    Host,
    /// Out of bounds or misaligned (embedded-storage's checks).
    Access(NorFlashErrorKind),
}

impl NorFlashError for FlashError {
    fn kind(&self) -> NorFlashErrorKind {
        match self {
            Self::Host => NorFlashErrorKind::Other,
            Self::Access(kind) => *kind,
        }
    }
}

/// `CAPACITY` bytes of NOR flash in erase sectors of `SECTOR` bytes, kept in a host file.
pub struct SemihostingFlash<const CAPACITY: usize, const SECTOR: usize> {
    handle: usize,
}

impl<const CAPACITY: usize, const SECTOR: usize> SemihostingFlash<CAPACITY, SECTOR> {
    /// Opens the host file `path` (relative to QEMU's working directory), creating it erased
    /// when it does not exist or has the wrong size.
    pub fn open(path: &CStr) -> Result<Self, FlashError> {
        let name = path.to_bytes();
        // SAFETY: semihosting OPEN reads `name.len()` bytes from a NUL-terminated string.
        let handle = unsafe { syscall!(OPEN, name.as_ptr(), MODE_READ_WRITE, name.len()) };
        if handle != usize::MAX {
            let mut flash = Self { handle };
            // SAFETY: FLEN on a handle OPEN returned.
            if unsafe { syscall!(FLEN, handle) } == CAPACITY {
                return Ok(flash);
            }
            flash.close();
        }
        // SAFETY: as above.
        let handle = unsafe { syscall!(OPEN, name.as_ptr(), MODE_CREATE, name.len()) };
        if handle == usize::MAX {
            return Err(FlashError::Host);
        }
        let mut flash = Self { handle };
        flash.fill(0, CAPACITY, 0xff)?;
        Ok(flash)
    }

    fn close(&mut self) {
        // SAFETY: CLOSE on a handle OPEN returned; it is not used afterwards.
        unsafe { syscall!(CLOSE, self.handle) };
    }

    fn seek(&mut self, offset: usize) -> Result<(), FlashError> {
        // SAFETY: SEEK on our handle; returns 0 on success.
        match unsafe { syscall!(SEEK, self.handle, offset) } {
            0 => Ok(()),
            _ => Err(FlashError::Host),
        }
    }

    fn read_at(&mut self, offset: usize, bytes: &mut [u8]) -> Result<(), FlashError> {
        self.seek(offset)?;
        // SAFETY: READ writes at most `bytes.len()` bytes into `bytes`; returns bytes NOT read.
        match unsafe { syscall!(READ, self.handle, bytes.as_mut_ptr(), bytes.len()) } {
            0 => Ok(()),
            _ => Err(FlashError::Host),
        }
    }

    fn write_at(&mut self, offset: usize, bytes: &[u8]) -> Result<(), FlashError> {
        self.seek(offset)?;
        // SAFETY: WRITE reads `bytes.len()` bytes from `bytes`; returns bytes NOT written.
        match unsafe { syscall!(WRITE, self.handle, bytes.as_ptr(), bytes.len()) } {
            0 => Ok(()),
            _ => Err(FlashError::Host),
        }
    }

    fn fill(&mut self, from: usize, to: usize, byte: u8) -> Result<(), FlashError> {
        let block = [byte; CHUNK];
        let mut at = from;
        while at < to {
            let n = (to - at).min(CHUNK);
            self.write_at(at, &block[..n])?;
            at += n;
        }
        Ok(())
    }
}

impl<const CAPACITY: usize, const SECTOR: usize> ErrorType for SemihostingFlash<CAPACITY, SECTOR> {
    type Error = FlashError;
}

impl<const CAPACITY: usize, const SECTOR: usize> ReadNorFlash
    for SemihostingFlash<CAPACITY, SECTOR>
{
    const READ_SIZE: usize = 1;

    fn read(&mut self, offset: u32, bytes: &mut [u8]) -> Result<(), FlashError> {
        check_read(self, offset, bytes.len()).map_err(FlashError::Access)?;
        self.read_at(offset as usize, bytes)
    }

    fn capacity(&self) -> usize {
        CAPACITY
    }
}

impl<const CAPACITY: usize, const SECTOR: usize> NorFlash for SemihostingFlash<CAPACITY, SECTOR> {
    const WRITE_SIZE: usize = 4;
    const ERASE_SIZE: usize = SECTOR;

    fn erase(&mut self, from: u32, to: u32) -> Result<(), FlashError> {
        check_erase(self, from, to).map_err(FlashError::Access)?;
        self.fill(from as usize, to as usize, 0xff)
    }

    fn write(&mut self, offset: u32, bytes: &[u8]) -> Result<(), FlashError> {
        check_write(self, offset, bytes.len()).map_err(FlashError::Access)?;
        // NOR semantics: a write clears bits and never sets them.
        let mut at = offset as usize;
        for chunk in bytes.chunks(CHUNK) {
            let mut cells = [0u8; CHUNK];
            let cells = &mut cells[..chunk.len()];
            self.read_at(at, cells)?;
            for (cell, new) in cells.iter_mut().zip(chunk) {
                *cell &= new;
            }
            self.write_at(at, cells)?;
            at += chunk.len();
        }
        Ok(())
    }
}
