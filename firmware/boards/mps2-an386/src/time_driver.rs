//! embassy-time on the Cortex-M SysTick: a 1 kHz tick (the board's 25 MHz core clock divided
//! down) counts milliseconds in 64 bits and expires the timer queue. One interrupt per
//! millisecond costs nothing that matters on an emulated board and keeps the driver small.

use core::cell::{Cell, RefCell};
use core::task::Waker;
use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use critical_section::Mutex;
use embassy_time_driver::Driver;
use embassy_time_queue_utils::Queue;

/// MPS2 SYSCLK, which clocks the Cortex-M4 (and SysTick with the processor clock source).
const CORE_CLOCK_HZ: u32 = 25_000_000;
/// embassy-time's tick rate (feature `tick-hz-1_000`).
const TICK_HZ: u32 = 1_000;

struct SysTickDriver {
    /// Milliseconds since `start`. Invariant: only the SysTick handler advances it.
    ticks: Mutex<Cell<u64>>,
    queue: Mutex<RefCell<Queue>>,
}

impl Driver for SysTickDriver {
    fn now(&self) -> u64 {
        critical_section::with(|cs| self.ticks.borrow(cs).get())
    }

    fn schedule_wake(&self, at: u64, waker: &Waker) {
        // The next tick looks at the queue; nothing to program.
        critical_section::with(|cs| {
            self.queue.borrow(cs).borrow_mut().schedule_wake(at, waker);
        });
    }
}

embassy_time_driver::time_driver_impl!(static DRIVER: SysTickDriver = SysTickDriver {
    ticks: Mutex::new(Cell::new(0)),
    queue: Mutex::new(RefCell::new(Queue::new())),
});

/// Starts the tick. Call once, before anything awaits a timer.
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CORE_CLOCK_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    critical_section::with(|cs| {
        let now = DRIVER.ticks.borrow(cs).get() + 1;
        DRIVER.ticks.borrow(cs).set(now);
        // Wakes every timer due by now.
        DRIVER.queue.borrow(cs).borrow_mut().next_expiration(now);
    });
}
