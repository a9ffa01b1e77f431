//! The virtual board's random source. QEMU's MPS2 AN386 models no TRNG, so the board reads the
//! host's `/dev/urandom` through semihosting, as a real board reads its TRNG peripheral: it
//! keys TLS and seeds the network stack (TCP sequence numbers, local ports).

use core::num::NonZeroU32;
use cortex_m_semihosting::syscall;
use rand_core::{CryptoRng, RngCore};

/// Semihosting OPEN mode "rb".
const MODE_READ: usize = 1;

/// rand_core's error code for [`NoEntropy`] (the first code free for users).
const NO_ENTROPY: NonZeroU32 = NonZeroU32::new(rand_core::Error::CUSTOM_START).unwrap();

/// Why there is no entropy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoEntropy;

/// The host's `/dev/urandom`, opened once.
pub struct HostEntropy {
    handle: usize,
}

impl HostEntropy {
    /// Opens the host's random device and reads from it once to prove it works.
    pub fn open() -> Result<Self, NoEntropy> {
        let name = c"/dev/urandom".to_bytes();
        // SAFETY: semihosting OPEN reads `name.len()` bytes of a NUL-terminated string.
        let handle = unsafe { syscall!(OPEN, name.as_ptr(), MODE_READ, name.len()) };
        if handle == usize::MAX {
            return Err(NoEntropy);
        }
        let mut entropy = Self { handle };
        entropy.read(&mut [0; 8])?;
        Ok(entropy)
    }

    fn read(&mut self, dest: &mut [u8]) -> Result<(), NoEntropy> {
        // SAFETY: READ writes at most `dest.len()` bytes into `dest`; returns bytes NOT read.
        match unsafe { syscall!(READ, self.handle, dest.as_mut_ptr(), dest.len()) } {
            0 => Ok(()),
            _ => Err(NoEntropy),
        }
    }

    /// A 64-bit seed.
    pub fn seed(&mut self) -> Result<u64, NoEntropy> {
        let mut bytes = [0; 8];
        self.read(&mut bytes)?;
        Ok(u64::from_le_bytes(bytes))
    }
}

impl RngCore for HostEntropy {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // The device answered at `open`; if the host stops answering there is no safe way on
        // (keys would be predictable): stop, and let the watchdog restart the board.
        if self.read(dest).is_err() {
            panic!("the host's /dev/urandom stopped answering");
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.read(dest)
            .map_err(|_| rand_core::Error::from(NO_ENTROPY))
    }
}

impl CryptoRng for HostEntropy {}
