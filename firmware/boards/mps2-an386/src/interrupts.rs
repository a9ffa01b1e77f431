//! The board's interrupt vectors (there is no peripheral access crate for the MPS2 AN386):
//! only the LAN9118 (IRQ 13) is used; every other line goes to cortex-m-rt's default handler.

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;

/// The LAN9118's register block (AN386: "Ethernet" at 0x4020_0000).
pub const LAN9118_BASE: usize = 0x4020_0000;
/// Its interrupt line on the NVIC.
const LAN9118_IRQ: u16 = 13;
/// Lines the AN386 image wires (QEMU's mps2 "num-irq").
const LINES: usize = 32;

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 13 is a valid external interrupt number on this board (below LINES).
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

unsafe extern "C" {
    fn DefaultHandler();
}

unsafe extern "C" fn lan9118_irq() {
    // SAFETY: the address main hands to `Lan9118::new`.
    unsafe { lan9118::on_interrupt(LAN9118_BASE) };
}

/// The vector table's external part, placed after the core exceptions by cortex-m-rt.
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
static __INTERRUPTS: [unsafe extern "C" fn(); LINES] = {
    let mut vectors = [DefaultHandler as unsafe extern "C" fn(); LINES];
    vectors[LAN9118_IRQ as usize] = lan9118_irq;
    vectors
};

/// Lets the LAN9118 interrupt in (after the driver is set up).
pub fn enable_lan9118() {
    // SAFETY: its handler only touches the driver's registers and an atomic waker.
    unsafe { NVIC::unmask(Irq(LAN9118_IRQ)) };
}
