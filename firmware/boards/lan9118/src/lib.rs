//! [`embassy-net`](https://crates.io/crates/embassy-net) driver for the SMSC LAN9118 (and the
//! software-compatible LAN9220 of Arm's MPS2 boards): a MAC + PHY behind a memory-mapped
//! 32-bit register file with on-chip FIFOs (16 KiB shared between TX and RX).
//!
//! - Receive: a frame is read from the RX data FIFO as whole 32-bit words in the order its RX
//!   status word announces, into the driver's own buffer, before embassy-net sees it; the
//!   frame's CRC word is read and dropped.
//! - Transmit: one frame = one buffer (TX command A marks it first and last segment), written
//!   as whole words after the two command words; the chip sends it once the last word is in.
//! - Interrupts: the chip's IRQ line (active high, push-pull) is raised by "RX status FIFO not
//!   empty" and by PHY link events. The board's interrupt handler calls [`on_interrupt`], which
//!   masks the chip's interrupts and wakes the network task; the driver unmasks them when it
//!   finds nothing left to do, so no event is missed between looking and sleeping.
//!
//! Register map and bit names follow the LAN9118 datasheet (SMSC DS00002266).
#![no_std]

mod regs;

use core::task::Context;
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;
use regs::{Regs, int, mac_cr, phy};

/// Largest Ethernet frame without CRC or VLAN tag.
pub const MTU: usize = 1514;

/// A received frame with its CRC, in whole words.
const RX_BUFFER: usize = (MTU + 4).next_multiple_of(4);

/// The interrupt handler wakes the network task through this.
static WAKER: AtomicWaker = AtomicWaker::new();

/// Why [`Lan9118::new`] found no usable controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitError {
    /// BYTE_TEST did not read 0x8765_4321: no LAN9118 at this address, or a bus problem.
    NotFound(u32),
    /// The chip did not leave reset (HW_CFG.SRST or PMT_CTRL.READY) within the polling bound.
    ResetTimeout,
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NotFound(v) => write!(f, "no LAN9118: BYTE_TEST reads {v:#010x}"),
            Self::ResetTimeout => f.write_str("LAN9118 did not come out of reset"),
        }
    }
}

/// The controller, initialised and ready to hand to `embassy_net::new`.
pub struct Lan9118 {
    regs: Regs,
    mac: [u8; 6],
    rx: [u8; RX_BUFFER],
    tx: [u8; MTU],
}

impl core::fmt::Debug for Lan9118 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Lan9118")
            .field("base", &self.regs.base())
            .field("mac", &self.mac)
            .finish_non_exhaustive()
    }
}

impl Lan9118 {
    /// Resets and configures the controller at `base`: MAC address `mac`, or the one its
    /// EEPROM loaded when `None`; TX and RX on, full duplex, broadcast accepted, promiscuous
    /// mode off; PHY auto-negotiation restarted; the IRQ line active high.
    ///
    /// # Safety
    /// `base` must be the address of a LAN9118's register block, and nothing else may drive
    /// that controller while the returned value lives.
    pub unsafe fn new(base: usize, mac: Option<[u8; 6]>) -> Result<Self, InitError> {
        // SAFETY: the caller guarantees `base` maps a LAN9118 this driver owns.
        let regs = unsafe { Regs::new(base) };
        let test = regs.read(regs::BYTE_TEST);
        if test != regs::BYTE_TEST_VALUE {
            return Err(InitError::NotFound(test));
        }
        regs.write(regs::HW_CFG, regs::HW_CFG_SRST);
        if !regs.wait(|r| {
            r.read(regs::HW_CFG) & regs::HW_CFG_SRST == 0
                && r.read(regs::PMT_CTRL) & regs::PMT_CTRL_READY != 0
        }) {
            return Err(InitError::ResetTimeout);
        }
        let mac = match mac {
            Some(mac) => {
                regs.mac_write(
                    regs::MAC_ADDRL,
                    u32::from_le_bytes([mac[0], mac[1], mac[2], mac[3]]),
                );
                regs.mac_write(regs::MAC_ADDRH, u32::from(mac[4]) | u32::from(mac[5]) << 8);
                mac
            }
            None => {
                let [a, b, c, d] = regs.mac_read(regs::MAC_ADDRL).to_le_bytes();
                let [e, f, _, _] = regs.mac_read(regs::MAC_ADDRH).to_le_bytes();
                [a, b, c, d, e, f]
            }
        };
        // Auto-negotiation (re)started; link changes raise the PHY interrupt.
        regs.phy_write(phy::BMCR, phy::BMCR_ANENABLE | phy::BMCR_ANRESTART);
        regs.phy_write(phy::INT_MASK, phy::INT_LINK_EVENTS);
        // TX on, and TX status words may be overwritten: nothing reads them (a sent frame
        // needs no confirmation), and a full status FIFO must not stall sending.
        regs.write(regs::TX_CFG, regs::TX_CFG_TX_ON | regs::TX_CFG_TXSAO);
        regs.write(regs::RX_CFG, 0);
        regs.mac_write(regs::MAC_CR, mac_cr::TXEN | mac_cr::RXEN | mac_cr::FDPX);
        regs.write(regs::INT_STS, u32::MAX);
        regs.write(
            regs::IRQ_CFG,
            regs::IRQ_CFG_EN | regs::IRQ_CFG_POL | regs::IRQ_CFG_TYPE,
        );
        regs.write(regs::INT_EN, int::RSFL | int::PHY);
        Ok(Self {
            regs,
            mac,
            rx: [0; RX_BUFFER],
            tx: [0; MTU],
        })
    }

    /// The MAC address in use.
    pub fn mac_address(&self) -> [u8; 6] {
        self.mac
    }

    /// Puts the PHY in loopback: every frame sent is received back and none reaches the wire.
    /// For self-tests.
    pub fn set_loopback(&mut self, on: bool) {
        let bmcr = self.regs.phy_read(phy::BMCR);
        let bmcr = if on {
            bmcr | phy::BMCR_LOOPBACK
        } else {
            bmcr & !phy::BMCR_LOOPBACK
        };
        self.regs.phy_write(phy::BMCR, bmcr);
    }

    /// Frames waiting in the RX FIFO.
    fn frames_waiting(&self) -> u32 {
        (self.regs.read(regs::RX_FIFO_INF) >> 16) & 0xff
    }

    /// Whether a whole frame and its two command words fit in the TX data FIFO now.
    fn tx_room(&self) -> bool {
        self.regs.read(regs::TX_FIFO_INF) & 0xffff >= (MTU as u32).next_multiple_of(4) + 8
    }

    /// Reads the next frame into `self.rx`; returns its length without CRC, or `None` for a
    /// frame the chip flagged as bad (dropped here).
    fn read_frame(&mut self) -> Option<usize> {
        let status = self.regs.read(regs::RX_STATUS_FIFO);
        // Length in bytes including the 4-byte CRC; the data FIFO holds it in whole words.
        let len = ((status >> 16) & 0x3fff) as usize;
        let words = len.div_ceil(4);
        let bad = status & regs::RX_STATUS_ERROR != 0 || len < 14 + 4 || words * 4 > self.rx.len();
        if bad {
            for _ in 0..words {
                self.regs.read(regs::RX_DATA_FIFO);
            }
            return None;
        }
        for chunk in self.rx[..words * 4].chunks_exact_mut(4) {
            chunk.copy_from_slice(&self.regs.read(regs::RX_DATA_FIFO).to_le_bytes());
        }
        Some(len - 4)
    }

    /// Nothing left to do: clears the sticky status, unmasks the interrupts and reports
    /// whether something arrived meanwhile (then the caller looks again).
    fn sleep(&self, cx: &mut Context) -> bool {
        WAKER.register(cx.waker());
        // Reading the PHY's interrupt source acknowledges it (else PHY_INT stays asserted).
        self.regs.phy_read(phy::INT_SOURCE);
        self.regs.write(regs::INT_STS, int::RSFL | int::PHY);
        self.regs.write(regs::INT_EN, int::RSFL | int::PHY);
        self.frames_waiting() > 0
    }
}

/// Call from the controller's interrupt handler: masks its interrupts (the driver unmasks them
/// once it has handled everything) and wakes the network task.
///
/// # Safety
/// `base` must be the register block given to [`Lan9118::new`].
pub unsafe fn on_interrupt(base: usize) {
    // SAFETY: forwarded from the caller.
    let regs = unsafe { Regs::new(base) };
    regs.write(regs::INT_EN, 0);
    WAKER.wake();
}

/// A received frame, already copied out of the chip.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

/// Room for one frame in the TX FIFO.
pub struct TxToken<'a> {
    regs: Regs,
    buf: &'a mut [u8; MTU],
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let frame = &mut self.buf[..len];
        let result = f(frame);
        // Command A: first and last segment of one buffer of `len` bytes, no offset.
        self.regs.write(
            regs::TX_DATA_FIFO,
            regs::TX_CMD_A_FIRST | regs::TX_CMD_A_LAST | len as u32,
        );
        // Command B: packet tag (unused) and packet length.
        self.regs.write(regs::TX_DATA_FIFO, len as u32);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.regs
                .write(regs::TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        result
    }
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, cx: &mut Context) -> Option<(RxToken<'_>, TxToken<'_>)> {
        loop {
            if self.frames_waiting() == 0 && !self.sleep(cx) {
                return None;
            }
            if !self.tx_room() {
                // Only on real hardware with a backlog: the FIFO drains at line rate.
                cx.waker().wake_by_ref();
                return None;
            }
            if let Some(len) = self.read_frame() {
                let regs = self.regs;
                return Some((
                    RxToken {
                        frame: &mut self.rx[..len],
                    },
                    TxToken {
                        regs,
                        buf: &mut self.tx,
                    },
                ));
            }
        }
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<TxToken<'_>> {
        if self.tx_room() {
            Some(TxToken {
                regs: self.regs,
                buf: &mut self.tx,
            })
        } else {
            cx.waker().wake_by_ref();
            None
        }
    }

    fn link_state(&mut self, cx: &mut Context) -> LinkState {
        if self.regs.phy_read(phy::BMSR) & phy::BMSR_LINK_UP != 0 {
            LinkState::Up
        } else {
            // The PHY interrupt (link events) wakes us when it comes up.
            self.sleep(cx);
            LinkState::Down
        }
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
