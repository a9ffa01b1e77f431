//! The boot counter: part of every reading's identity `(device, boot, seq)`.
//!
//! Invariant: a boot number is used by at most one run of the device. [`start_boot`] therefore
//! persists the incremented counter, and checks it reads back, *before* the first reading of the
//! boot exists; if that fails the node must not run (readings with a reused boot number would be
//! taken by the gateway for duplicates of earlier ones).

/// Persistent storage of the boot counter: board flash on hardware, a file or memory in
/// simulation.
pub trait BootStore {
    /// Storage failure.
    type Error;

    /// The last stored counter, or `None` if none was ever stored.
    fn load(&mut self) -> Result<Option<u32>, Self::Error>;

    /// Stores `boot` durably (it must survive a reset right after this returns).
    fn store(&mut self, boot: u32) -> Result<(), Self::Error>;
}

/// Why a boot could not be started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum BootError<E> {
    /// Reading the stored counter failed.
    Load(E),
    /// Writing the new counter failed.
    Store(E),
    /// The counter read back differs from what was written.
    NotPersisted,
    /// The counter is at `u32::MAX`: the device cannot get a fresh identity any more.
    Exhausted,
}

/// Starts a boot: loads the counter, increments it (the first boot is 1), stores and verifies
/// it, and returns the new boot number.
pub fn start_boot<S: BootStore>(store: &mut S) -> Result<u32, BootError<S::Error>> {
    let previous = store.load().map_err(BootError::Load)?.unwrap_or(0);
    let boot = previous.checked_add(1).ok_or(BootError::Exhausted)?;
    store.store(boot).map_err(BootError::Store)?;
    match store.load().map_err(BootError::Load)? {
        Some(stored) if stored == boot => Ok(boot),
        _ => Err(BootError::NotPersisted),
    }
}

/// A boot store in RAM, for simulation and tests: persists across [`start_boot`] calls on the
/// same value only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryBootStore {
    /// The stored counter.
    pub stored: Option<u32>,
}

impl MemoryBootStore {
    /// A store that last held `stored`.
    pub const fn new(stored: Option<u32>) -> Self {
        Self { stored }
    }
}

impl BootStore for MemoryBootStore {
    type Error = core::convert::Infallible;

    fn load(&mut self) -> Result<Option<u32>, Self::Error> {
        Ok(self.stored)
    }

    fn store(&mut self, boot: u32) -> Result<(), Self::Error> {
        self.stored = Some(boot);
        Ok(())
    }
}

#[cfg(any(test, feature = "target-tests"))]
// Test code: a failed expectation is the test failing (clippy.toml allows this under
// `#[cfg(test)]` only, which this module is not when `target-tests` compiles it for a target).
#[allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]
pub(crate) mod tests {
    use super::*;

    #[cfg_attr(test, test)]
    pub(crate) fn increments_and_persists_every_start() {
        let mut store = MemoryBootStore::default();
        assert_eq!(start_boot(&mut store), Ok(1));
        assert_eq!(start_boot(&mut store), Ok(2));
        assert_eq!(store.stored, Some(2));
        let mut store = MemoryBootStore::new(Some(41));
        assert_eq!(start_boot(&mut store), Ok(42));
    }

    #[cfg_attr(test, test)]
    pub(crate) fn refuses_to_reuse_a_boot_number() {
        let mut store = MemoryBootStore::new(Some(u32::MAX));
        assert_eq!(start_boot(&mut store), Err(BootError::Exhausted));
        assert_eq!(store.stored, Some(u32::MAX));
    }

    /// Flash that silently ignores writes.
    struct ReadOnly(Option<u32>);
    impl BootStore for ReadOnly {
        type Error = ();
        fn load(&mut self) -> Result<Option<u32>, ()> {
            Ok(self.0)
        }
        fn store(&mut self, _: u32) -> Result<(), ()> {
            Ok(())
        }
    }

    /// Flash that fails to write.
    struct Broken;
    impl BootStore for Broken {
        type Error = u8;
        fn load(&mut self) -> Result<Option<u32>, u8> {
            Ok(Some(3))
        }
        fn store(&mut self, _: u32) -> Result<(), u8> {
            Err(9)
        }
    }

    #[cfg_attr(test, test)]
    pub(crate) fn storage_failures_stop_the_boot() {
        assert_eq!(
            start_boot(&mut ReadOnly(Some(5))),
            Err(BootError::NotPersisted)
        );
        assert_eq!(start_boot(&mut Broken), Err(BootError::Store(9)));
    }
}
