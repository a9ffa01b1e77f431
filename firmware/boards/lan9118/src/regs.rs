//! The register file: offsets and bits from the LAN9118 datasheet, volatile 32-bit access, and
//! the indirect MAC (MAC_CSR_CMD/DATA) and PHY (MII_ACC/DATA) registers behind it.

/// RX data FIFO port (0x00..0x1c alias the same port).
pub const RX_DATA_FIFO: usize = 0x00;
/// TX data FIFO port (0x20..0x3c alias the same port).
pub const TX_DATA_FIFO: usize = 0x20;
/// RX status FIFO port (pops one status word).
pub const RX_STATUS_FIFO: usize = 0x40;
pub const IRQ_CFG: usize = 0x54;
pub const INT_STS: usize = 0x58;
pub const INT_EN: usize = 0x5c;
pub const BYTE_TEST: usize = 0x64;
pub const RX_CFG: usize = 0x6c;
pub const TX_CFG: usize = 0x70;
pub const HW_CFG: usize = 0x74;
pub const RX_FIFO_INF: usize = 0x7c;
pub const TX_FIFO_INF: usize = 0x80;
pub const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xa4;
const MAC_CSR_DATA: usize = 0xa8;

/// What BYTE_TEST reads on a LAN9118 in 32-bit mode with the right byte order.
pub const BYTE_TEST_VALUE: u32 = 0x8765_4321;
pub const HW_CFG_SRST: u32 = 1;
pub const PMT_CTRL_READY: u32 = 1;
pub const TX_CFG_TX_ON: u32 = 1 << 1;
pub const TX_CFG_TXSAO: u32 = 1 << 2;
pub const IRQ_CFG_TYPE: u32 = 1;
pub const IRQ_CFG_POL: u32 = 1 << 4;
pub const IRQ_CFG_EN: u32 = 1 << 8;
/// RX status word: error summary.
pub const RX_STATUS_ERROR: u32 = 1 << 15;
pub const TX_CMD_A_LAST: u32 = 1 << 12;
pub const TX_CMD_A_FIRST: u32 = 1 << 13;

/// INT_STS / INT_EN bits.
pub mod int {
    /// RX status FIFO above its level (0 by default: any frame).
    pub const RSFL: u32 = 1 << 3;
    /// The PHY raised an interrupt (its INT_SOURCE register says which).
    pub const PHY: u32 = 1 << 18;
}

/// Indirect MAC registers.
pub const MAC_CR: u8 = 1;
pub const MAC_ADDRH: u8 = 2;
pub const MAC_ADDRL: u8 = 3;
const MAC_MII_ACC: u8 = 6;
const MAC_MII_DATA: u8 = 7;

/// MAC_CR bits.
pub mod mac_cr {
    pub const RXEN: u32 = 1 << 2;
    pub const TXEN: u32 = 1 << 3;
    pub const FDPX: u32 = 1 << 20;
}

/// The internal PHY (MII address 1) and its registers.
pub mod phy {
    pub const ADDRESS: u32 = 1;
    pub const BMCR: u8 = 0;
    pub const BMCR_ANRESTART: u32 = 1 << 9;
    pub const BMCR_ANENABLE: u32 = 1 << 12;
    pub const BMCR_LOOPBACK: u32 = 1 << 14;
    pub const BMSR: u8 = 1;
    pub const BMSR_LINK_UP: u32 = 1 << 2;
    pub const INT_SOURCE: u8 = 29;
    pub const INT_MASK: u8 = 30;
    /// Link down, auto-negotiation complete, energy on.
    pub const INT_LINK_EVENTS: u32 = (1 << 4) | (1 << 6) | (1 << 7);
}

/// Busy bits are polled at most this many times (the chip answers within microseconds).
const POLL_LIMIT: u32 = 100_000;
const CSR_BUSY: u32 = 1 << 31;
const CSR_READ: u32 = 1 << 30;
const MII_BUSY: u32 = 1;
const MII_WRITE: u32 = 1 << 1;

/// The register block's base address.
#[derive(Clone, Copy)]
pub struct Regs(usize);

impl Regs {
    /// # Safety
    /// `base` must map a LAN9118 register block.
    pub unsafe fn new(base: usize) -> Self {
        Self(base)
    }

    pub fn base(&self) -> usize {
        self.0
    }

    pub fn read(&self, offset: usize) -> u32 {
        // SAFETY: `new`'s contract: base + offset (< 0x100) is a LAN9118 register.
        unsafe { core::ptr::read_volatile((self.0 + offset) as *const u32) }
    }

    pub fn write(&self, offset: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { core::ptr::write_volatile((self.0 + offset) as *mut u32, value) }
    }

    /// Polls `done` up to the bound; `false` if it never held.
    pub fn wait(&self, done: impl Fn(&Self) -> bool) -> bool {
        (0..POLL_LIMIT).any(|_| done(self))
    }

    pub fn mac_read(&self, reg: u8) -> u32 {
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0);
        self.write(MAC_CSR_CMD, CSR_BUSY | CSR_READ | u32::from(reg));
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0);
        self.read(MAC_CSR_DATA)
    }

    pub fn mac_write(&self, reg: u8, value: u32) {
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0);
        self.write(MAC_CSR_DATA, value);
        self.write(MAC_CSR_CMD, CSR_BUSY | u32::from(reg));
        self.wait(|r| r.read(MAC_CSR_CMD) & CSR_BUSY == 0);
    }

    pub fn phy_read(&self, reg: u8) -> u32 {
        self.wait(|r| r.mac_read(MAC_MII_ACC) & MII_BUSY == 0);
        self.mac_write(
            MAC_MII_ACC,
            phy::ADDRESS << 11 | u32::from(reg) << 6 | MII_BUSY,
        );
        self.wait(|r| r.mac_read(MAC_MII_ACC) & MII_BUSY == 0);
        self.mac_read(MAC_MII_DATA) & 0xffff
    }

    pub fn phy_write(&self, reg: u8, value: u32) {
        self.wait(|r| r.mac_read(MAC_MII_ACC) & MII_BUSY == 0);
        self.mac_write(MAC_MII_DATA, value & 0xffff);
        self.mac_write(
            MAC_MII_ACC,
            phy::ADDRESS << 11 | u32::from(reg) << 6 | MII_WRITE | MII_BUSY,
        );
        self.wait(|r| r.mac_read(MAC_MII_ACC) & MII_BUSY == 0);
    }
}
