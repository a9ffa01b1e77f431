//! Sensor node on a Nucleo-F429ZI (STM32F429ZI, Cortex-M4F at 168 MHz, wired Ethernet).
//!
//! Maps pins, initialises peripherals and hands everything to `sensor_node_core::run`:
//!
//! | what | where |
//! |---|---|
//! | SHT4x (temperature ch 0, humidity ch 1) | I2C1: SCL = PB8 (CN7 pin 2, Arduino D15), SDA = PB9 (CN7 pin 4, Arduino D14), 3V3, GND; 100 kHz |
//! | die temperature (ch 2), VDDA (ch 3) | ADC1 internal channels (temperature sensor, VREFINT) |
//! | Ethernet | on-board LAN8742A PHY over RMII (PA1, PA2, PA7, PB13, PC1, PC4, PC5, PG11, PG13), DHCP |
//! | boot counter | flash sectors 12 and 13 (0x0810_0000..0x0810_8000, 2 x 16 KiB, bank 2) |
//! | watchdog | IWDG (LSI), 30 s, fed by the core's loop at every wake-up |
//! | time | UTC from SNTP (`FW_SNTP_SERVER`) once DHCP is done |
//! | log | defmt over RTT (probe-rs) |
//!
//! The MAC address is locally administered and derived from the chip's unique ID; so is the
//! device ID unless `FW_DEVICE_ID` is set at build time (see `firmware/README.md`). With
//! `--features tls` the MQTT session runs over TLS 1.3 (the core's embedded-tls connector,
//! keyed by the hardware RNG) with the `FW_TLS_*` settings.
#![no_std]
#![no_main]

mod mcu_sensors;

use board_common::boot_store::Sector;
use board_common::{Both, EmbassyClock, FeedWatchdog, FlashBootStore, device_id, settings};
use defmt::{error, info};
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_stm32::eth::{Ethernet, GenericPhy, PacketQueue, Sma};
use embassy_stm32::flash::Flash;
use embassy_stm32::i2c::{self, I2c};
use embassy_stm32::peripherals::{ETH, ETH_SMA, RNG};
use embassy_stm32::rng::{self, Rng};
use embassy_stm32::time::Hertz;
use embassy_stm32::wdg::IndependentWatchdog;
use embassy_stm32::{bind_interrupts, eth};
use embassy_time::Timer;
use mcu_sensors::McuSensors;
use sensor_node_core::sensor::{Precision, SHT4X_ADDRESS, Sht4x};
use sensor_node_core::{Node, start_boot};
use static_cell::StaticCell;
use telemetry_wire::DeviceId;
use telemetry_wire::limits::MAX_DEVICE_ID_LEN;
use {defmt_rtt as _, panic_probe as _};

bind_interrupts!(struct Irqs {
    ETH => eth::InterruptHandler;
    HASH_RNG => rng::InterruptHandler<RNG>;
});

/// Readings the offline ring holds (`FW_RING_CAPACITY`), 16 bytes each.
const RING_CAPACITY: usize = settings::RING_CAPACITY;

/// Boot counter log: flash sectors 12 and 13, 16 KiB each, far above the image (which stays
/// below 128 KiB) so that flashing a new image leaves the counter alone. Offsets count from
/// the start of flash (0x0800_0000).
const BOOT_SECTORS: [Sector; 2] = [
    Sector {
        offset: 0x10_0000,
        len: 0x4000,
    },
    Sector {
        offset: 0x10_4000,
        len: 0x4000,
    },
];

/// Watchdog period: above the longest wait of the loop without a wake-up (a write bounded by
/// board_common's 20 s TCP timeout), below the IWDG's 32.7 s maximum.
const WATCHDOG_US: u32 = 30_000_000;

type Device = Ethernet<'static, ETH, GenericPhy<Sma<'static, ETH_SMA>>>;

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Device>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn sntp_task(stack: embassy_net::Stack<'static>, server: (&'static str, u16)) -> ! {
    board_common::sntp::keep_time(stack, server).await
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let p = embassy_stm32::init(rcc_config());
    let uid = embassy_stm32::uid::uid();

    // The boot number is persisted before any reading of this boot exists.
    let boot = {
        let flash = Flash::new_blocking(p.FLASH);
        let Ok(mut store) = FlashBootStore::new(flash, BOOT_SECTORS) else {
            halt("boot counter sectors are misconfigured").await
        };
        match start_boot(&mut store) {
            Ok(boot) => boot,
            Err(e) => {
                error!("boot counter: {}", e);
                halt("cannot persist the boot counter").await
            }
        }
    };

    static DERIVED_ID: StaticCell<heapless::String<MAX_DEVICE_ID_LEN>> = StaticCell::new();
    let id: &'static str = match settings::DEVICE_ID {
        Some(id) => id,
        None => DERIVED_ID.init(device_id::from_unique_id("f429", &uid)),
    };
    let Ok(device) = DeviceId::new(id) else {
        halt("invalid device ID").await
    };
    info!("device {} boot {}", id, boot);

    // Network: Ethernet with DHCP. The hardware RNG seeds TCP sequence numbers and ports.
    let mut rng = Rng::new(p.RNG, Irqs);
    let seed = rng.next_u64();
    static PACKETS: StaticCell<PacketQueue<4, 4>> = StaticCell::new();
    let ethernet = Ethernet::new(
        PACKETS.init(PacketQueue::new()),
        p.ETH,
        Irqs,
        p.PA1,  // REF_CLK
        p.PA7,  // CRS_DV
        p.PC4,  // RXD0
        p.PC5,  // RXD1
        p.PG13, // TXD0
        p.PB13, // TXD1
        p.PG11, // TX_EN
        mac_address(&uid),
        p.ETH_SMA,
        p.PA2, // MDIO
        p.PC1, // MDC
    );
    // Sockets: DHCP, DNS, the broker's TCP and SNTP's UDP.
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        ethernet,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    match net_task(runner) {
        Ok(task) => spawner.spawn(task),
        Err(_) => halt("network task already running").await,
    }
    if let Some(server) = settings::SNTP_SERVER {
        match sntp_task(stack, server) {
            Ok(task) => spawner.spawn(task),
            Err(_) => halt("SNTP task already running").await,
        }
    }

    // Sensors: SHT4x on I2C1 (blocking: a transfer takes under 1 ms at 100 kHz; the
    // conversion time is waited for asynchronously by the core) plus ADC1's internal inputs.
    let mut i2c_config = i2c::Config::default();
    i2c_config.frequency = Hertz::khz(100);
    let i2c = I2c::new_blocking(p.I2C1, p.PB8, p.PB9, i2c_config);
    let sht = Sht4x::new(i2c, SHT4X_ADDRESS, Precision::High, 0);
    let mut sensors = Both::new(sht, McuSensors::new(p.ADC1, 2));

    static NODE: StaticCell<Node<'static, RING_CAPACITY>> = StaticCell::new();
    let (connector, mqtt_buffers) = match board_common::uplink::open(stack) {
        Ok(uplink) => uplink,
        Err(e) => {
            error!("uplink: {}", e);
            halt("uplink").await
        }
    };
    #[cfg(not(feature = "tls"))]
    let mut connector = {
        drop(rng);
        connector
    };
    #[cfg(feature = "tls")]
    let mut connector = match board_common::uplink::with_tls(connector, rng) {
        Ok(tls) => tls,
        Err(e) => {
            error!("TLS: {}", e);
            halt("invalid TLS settings").await
        }
    };
    let jitter_seed = u64::from_le_bytes([
        uid[0], uid[1], uid[2], uid[3], uid[8], uid[9], uid[10], uid[11],
    ]);
    let node = NODE.init_with(|| Node::new(device, boot, board_common::node_config(jitter_seed)));

    // Started once the settings are known good: a halted board (bad settings) stays halted
    // instead of rebooting, and writing its boot counter, forever.
    let mut watchdog = IndependentWatchdog::new(p.IWDG, WATCHDOG_US);
    watchdog.unleash();
    let result = sensor_node_core::run(
        node,
        &mut sensors,
        &EmbassyClock,
        &mut connector,
        &mut FeedWatchdog::new(|| watchdog.pet()),
        mqtt_buffers,
        core::future::pending::<()>(),
    )
    .await;
    // `run` only returns on a configuration error (it retries network trouble forever).
    if let Err(e) = result {
        error!("node stopped: {}", e);
    }
    halt("node stopped").await
}

/// 168 MHz from the ST-LINK's 8 MHz clock (HSE bypass), with the 48 MHz PLL output the RNG
/// needs. APB1 42 MHz, APB2 84 MHz (ADC at 21 MHz).
fn rcc_config() -> embassy_stm32::Config {
    use embassy_stm32::rcc::*;
    let mut config = embassy_stm32::Config::default();
    config.rcc.hse = Some(Hse {
        freq: Hertz(8_000_000),
        mode: HseMode::Bypass,
    });
    config.rcc.pll_src = PllSource::HSE;
    config.rcc.pll = Some(Pll {
        prediv: PllPreDiv::DIV4,
        mul: PllMul::MUL168,
        divp: Some(PllPDiv::DIV2), // 8 MHz / 4 * 168 / 2 = 168 MHz
        divq: Some(PllQDiv::DIV7), // 336 MHz / 7 = 48 MHz
        divr: None,
    });
    config.rcc.ahb_pre = AHBPrescaler::DIV1;
    config.rcc.apb1_pre = APBPrescaler::DIV4;
    config.rcc.apb2_pre = APBPrescaler::DIV2;
    config.rcc.sys = Sysclk::PLL1_P;
    config
}

/// A locally administered unicast MAC address folded from the 96-bit unique ID.
fn mac_address(uid: &[u8; 12]) -> [u8; 6] {
    let mut mac = [0x02, 0, 0, 0, 0, 0];
    for (i, b) in uid.iter().enumerate() {
        mac[1 + i % 5] ^= b;
    }
    mac
}

/// Stops here for good, logging why once a minute (the node must not run).
async fn halt(why: &'static str) -> ! {
    loop {
        error!("halted: {}", why);
        Timer::after_secs(60).await;
    }
}
