//! The board's watchdog: Arm's CMSDK APB watchdog (SP805-like) that the MPS2 AN386 image has at
//! 0x4000_8000, clocked at 25 MHz. It counts LOAD down; at zero it raises its interrupt (the
//! NMI on this board) and reloads; at the next zero with the interrupt still pending it resets
//! the board. Feeding clears the interrupt and reloads. QEMU models it, reset included.

/// Register block and offsets (CMSDK APB watchdog TRM).
const BASE: usize = 0x4000_8000;
const LOAD: usize = 0x00;
const CONTROL: usize = 0x08;
const INTCLR: usize = 0x0c;
const LOCK: usize = 0xc00;
const CONTROL_INTEN: u32 = 1;
const CONTROL_RESEN: u32 = 1 << 1;
const UNLOCK_KEY: u32 = 0x1ACC_E551;
const CLOCK_HZ: u32 = 25_000_000;

/// The running watchdog: it resets the board unless [`Watchdog::feed`] comes at least once per
/// timeout.
pub struct Watchdog(());

impl Watchdog {
    /// Starts it: a reset `timeout_s` seconds (at most 343) after the last feed.
    pub fn start(timeout_s: u32) -> Self {
        // Reset comes after two countdowns of LOAD.
        let load = (timeout_s.min(343) / 2).max(1) * CLOCK_HZ;
        write(LOCK, UNLOCK_KEY);
        write(LOAD, load);
        write(CONTROL, CONTROL_INTEN | CONTROL_RESEN);
        write(LOCK, 0);
        Self(())
    }

    /// Restarts the countdown.
    pub fn feed(&mut self) {
        write(LOCK, UNLOCK_KEY);
        write(INTCLR, 1);
        write(LOCK, 0);
    }
}

fn write(offset: usize, value: u32) {
    // SAFETY: the AN386 maps the watchdog's registers at BASE; `Watchdog` is its only user.
    unsafe { core::ptr::write_volatile((BASE + offset) as *mut u32, value) }
}

/// The watchdog's first timeout (the NMI on this board): the loop has not fed it for half the
/// period. Says so and waits for the reset the second timeout brings.
///
/// # Safety
/// cortex-m-rt's rule for NMI handlers: it shares nothing with the interrupted code (it only
/// prints through semihosting and spins).
#[cortex_m_rt::exception]
unsafe fn NonMaskableInt() -> ! {
    cortex_m_semihosting::hprintln!("watchdog: the loop stopped feeding me; reset follows");
    loop {
        cortex_m::asm::nop();
    }
}
