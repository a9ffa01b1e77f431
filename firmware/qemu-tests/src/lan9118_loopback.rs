//! The `lan9118` driver against QEMU's LAN9118 model, with the PHY in loopback: reset and
//! identification, the MAC address written and read back, frames of every length modulo 4
//! (the FIFOs move 32-bit words) and of the full MTU sent and received byte for byte through
//! the embassy-net driver interface, nothing received when nothing was sent.

use core::task::{Context, Waker};
use embassy_net_driver::{Driver, RxToken, TxToken};
use lan9118::{Lan9118, MTU};

/// The AN386's LAN9118.
const BASE: usize = 0x4020_0000;
const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

/// Returns the number of frames looped back, or what went wrong.
pub fn run() -> Result<usize, &'static str> {
    // SAFETY: QEMU's mps2-an386 maps a LAN9118 at BASE; nothing else uses it in this program.
    let mut nic = unsafe { Lan9118::new(BASE, Some(MAC)) }.map_err(|_| "no LAN9118 found")?;
    if nic.mac_address() != MAC
        || nic.hardware_address() != embassy_net_driver::HardwareAddress::Ethernet(MAC)
    {
        return Err("MAC address not taken");
    }
    nic.set_loopback(true);
    let mut cx = Context::from_waker(Waker::noop());
    if nic.receive(&mut cx).is_some() {
        return Err("a frame arrived before any was sent");
    }
    let mut frames = 0;
    for len in [60usize, 61, 62, 63, 64, 333, MTU - 1, MTU] {
        let fill = |buf: &mut [u8]| {
            buf[..6].copy_from_slice(&MAC);
            buf[6..12].copy_from_slice(&MAC);
            buf[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental EtherType
            for (i, b) in buf[14..].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(31).wrapping_add(len as u8);
            }
        };
        let mut expected = [0u8; MTU];
        fill(&mut expected[..len]);
        nic.transmit(&mut cx)
            .ok_or("no room to transmit")?
            .consume(len, fill);
        let (rx, _) = nic.receive(&mut cx).ok_or("the frame did not come back")?;
        if !rx.consume(|frame| frame == &expected[..len]) {
            return Err("the frame came back altered");
        }
        frames += 1;
    }
    if nic.receive(&mut cx).is_some() {
        return Err("more frames came back than were sent");
    }
    Ok(frames)
}
