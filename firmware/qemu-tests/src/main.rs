//! Runs `sensor_node_core::target_tests::every()` (the core's unit and protocol tests, and its
//! TLS layer's), then the virtual board's LAN9118 driver against QEMU's model, on the real
//! instruction set: a Cortex-M4 with FPU, emulated by `qemu-system-arm -M mps2-an386`.
//!
//! Prints one line per test and a closing `N passed, N failed` line through semihosting, and
//! exits QEMU with status 0 when all passed, 1 otherwise. There is no unwinding on this target:
//! the first failing test (a panic or a fault) ends the run, and the tests after it are
//! reported as skipped.
#![no_std]
#![no_main]

use core::panic::PanicInfo;
use core::sync::atomic::{AtomicUsize, Ordering};
use cortex_m_rt::{ExceptionFrame, entry, exception};
use cortex_m_semihosting::{debug, hprintln};
use sensor_node_core::target_tests::{Test, every};

mod lan9118_loopback;

/// Index into [`every`] of the test running now.
static CURRENT: AtomicUsize = AtomicUsize::new(0);

#[entry]
fn main() -> ! {
    hprintln!(
        "running {} tests on a Cortex-M4 (QEMU mps2-an386)",
        every().count()
    );
    for (i, test) in every().enumerate() {
        CURRENT.store(i, Ordering::SeqCst);
        (test.run)();
        hprintln!("test {} ... ok", name(test));
    }
    match lan9118_loopback::run() {
        Ok(frames) => hprintln!("driver lan9118 loopback ({} frames) ... ok", frames),
        Err(why) => {
            hprintln!("driver lan9118 loopback ... FAILED: {}", why);
            debug::exit(debug::EXIT_FAILURE);
        }
    }
    hprintln!("qemu: {} passed, 0 failed", every().count());
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::bkpt();
    }
}

/// `ring::tests::push_assigns_consecutive_seqs` rather than the full `crate::` path.
fn name(test: &Test) -> &'static str {
    test.name.strip_prefix("crate::").unwrap_or(test.name)
}

/// Reports the running test as failed, the rest as skipped, and exits with status 1.
fn fail(why: &dyn core::fmt::Display) -> ! {
    let i = CURRENT.load(Ordering::SeqCst);
    if let Some(test) = every().nth(i) {
        hprintln!("test {} ... FAILED\n{}", name(test), why);
    } else {
        hprintln!("FAILED outside a test: {}", why);
    }
    hprintln!(
        "qemu: {} passed, 1 failed, {} skipped",
        i,
        every().count().saturating_sub(i + 1)
    );
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::bkpt();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    fail(info)
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    struct Fault(u32);
    impl core::fmt::Display for Fault {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            write!(f, "hard fault at pc {:#010x}", self.0)
        }
    }
    fail(&Fault(frame.pc()))
}
