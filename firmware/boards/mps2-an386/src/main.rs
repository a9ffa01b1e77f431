//! Sensor node on QEMU's Arm MPS2 board with the AN386 image (Cortex-M4 at 25 MHz): the
//! virtual board CI runs end to end against a real gateway. Same core, settings and main loop
//! as the Nucleo; only the drivers differ:
//!
//! | what | where |
//! |---|---|
//! | sensor | none modelled: channel 0 counts sensor cycles (`counter_sensor.rs`) |
//! | Ethernet | LAN9118 at 0x4020_0000, IRQ 13 (`lan9118` crate), DHCP from QEMU's user network |
//! | time | SysTick at 1 kHz (`time_driver.rs`); UTC from SNTP (`FW_SNTP_SERVER`) |
//! | watchdog | CMSDK APB watchdog at 0x4000_8000, 30 s, fed by the core's loop |
//! | boot counter | "flash" = `virtual-board-flash.bin` in QEMU's working directory (semihosting) |
//! | log | semihosting, on QEMU's standard output |
//! | RNG | the host's `/dev/urandom` through semihosting (no TRNG is modelled) |
//!
//! The MAC address is QEMU's (`-nic user,model=lan9118,mac=...`); the device ID is derived
//! from it unless `FW_DEVICE_ID` is set at build time. With `--features tls` the MQTT session
//! runs over TLS 1.3 (the core's embedded-tls connector) with the `FW_TLS_*` settings.
#![no_std]
#![no_main]

mod counter_sensor;
mod entropy;
mod flash;
mod interrupts;
mod time_driver;
mod watchdog;

use board_common::boot_store::Sector;
use board_common::{EmbassyClock, FeedWatchdog, FlashBootStore, device_id, settings};
use core::panic::PanicInfo;
use cortex_m_semihosting::hprintln;
use counter_sensor::CycleCounter;
use embassy_executor::Spawner;
use embassy_net::StackResources;
use embassy_time::{Instant, Timer};
use entropy::HostEntropy;
use flash::SemihostingFlash;
use lan9118::Lan9118;
use sensor_node_core::{AckOutcome, Event, Hooks, Node, Status, start_boot};
use static_cell::StaticCell;
use telemetry_wire::DeviceId;
use telemetry_wire::limits::MAX_DEVICE_ID_LEN;
use watchdog::Watchdog;

/// Readings the offline ring holds (`FW_RING_CAPACITY`), 16 bytes each.
const RING_CAPACITY: usize = settings::RING_CAPACITY;

/// The virtual flash: two 4 KiB sectors, both for the boot counter log.
const SECTOR: usize = 4096;
type BoardFlash = SemihostingFlash<{ 2 * SECTOR }, SECTOR>;
const FLASH_FILE: &core::ffi::CStr = c"virtual-board-flash.bin";
const BOOT_SECTORS: [Sector; 2] = [
    Sector {
        offset: 0,
        len: SECTOR as u32,
    },
    Sector {
        offset: SECTOR as u32,
        len: SECTOR as u32,
    },
];

/// Watchdog period: above the longest wait of the loop without a wake-up (a write bounded by
/// board_common's 20 s TCP timeout).
const WATCHDOG_S: u32 = 30;

/// `[uptime] message` on QEMU's standard output.
macro_rules! log {
    ($($arg:tt)*) => {
        hprintln!("[{:>8} ms] {}", Instant::now().as_millis(), format_args!($($arg)*))
    };
}

#[embassy_executor::task]
async fn net_task(mut runner: embassy_net::Runner<'static, Lan9118>) -> ! {
    runner.run().await
}

#[embassy_executor::task]
async fn sntp_task(stack: embassy_net::Stack<'static>, server: (&'static str, u16)) -> ! {
    board_common::sntp::keep_time(stack, server).await
}

#[embassy_executor::task]
async fn report_task(stack: embassy_net::Stack<'static>) -> ! {
    stack.wait_config_up().await;
    if let Some(config) = stack.config_v4() {
        log!("DHCP: address {}", config.address);
    }
    let mut had_time = false;
    loop {
        if !had_time && let Some(utc) = sensor_node_core::Clock::boot_utc_ms(&EmbassyClock) {
            log!("SNTP: boot was at {} ms UTC", utc);
            had_time = true;
        }
        Timer::after_secs(1).await;
    }
}

#[embassy_executor::main]
async fn main(spawner: Spawner) -> ! {
    let Some(core) = cortex_m::Peripherals::take() else {
        halt("core peripherals taken twice")
    };
    time_driver::start(core.SYST);

    // The boot number is persisted before any reading of this boot exists.
    let boot = {
        let Ok(flash) = BoardFlash::open(FLASH_FILE) else {
            halt("cannot open the virtual flash (semihosting)")
        };
        let Ok(mut store) = FlashBootStore::new(flash, BOOT_SECTORS) else {
            halt("boot counter sectors are misconfigured")
        };
        match start_boot(&mut store) {
            Ok(boot) => boot,
            Err(_) => halt("cannot persist the boot counter"),
        }
    };

    // SAFETY: the AN386 maps a LAN9118 there, and nothing else drives it.
    let ethernet = match unsafe { Lan9118::new(interrupts::LAN9118_BASE, None) } {
        Ok(ethernet) => ethernet,
        Err(e) => {
            log!("Ethernet: {}", e);
            halt("no Ethernet controller")
        }
    };
    let mac = ethernet.mac_address();
    interrupts::enable_lan9118();

    static DERIVED_ID: StaticCell<heapless::String<MAX_DEVICE_ID_LEN>> = StaticCell::new();
    let id: &'static str = match settings::DEVICE_ID {
        Some(id) => id,
        None => DERIVED_ID.init(device_id::from_unique_id("an386", &mac)),
    };
    let Ok(device) = DeviceId::new(id) else {
        halt("invalid device ID")
    };
    log!("device {} boot {} mac {:02x?}", id, boot, mac);

    let Ok(mut entropy) = HostEntropy::open() else {
        halt("no entropy: semihosting cannot read the host's /dev/urandom")
    };
    let Ok(seed) = entropy.seed() else {
        halt("no entropy")
    };
    // Sockets: DHCP, DNS, the broker's TCP and SNTP's UDP.
    static RESOURCES: StaticCell<StackResources<4>> = StaticCell::new();
    let (stack, runner) = embassy_net::new(
        ethernet,
        embassy_net::Config::dhcpv4(Default::default()),
        RESOURCES.init(StackResources::new()),
        seed,
    );
    spawn(&spawner, net_task(runner));
    spawn(&spawner, report_task(stack));
    if let Some(server) = settings::SNTP_SERVER {
        spawn(&spawner, sntp_task(stack, server));
    }

    static NODE: StaticCell<Node<'static, RING_CAPACITY>> = StaticCell::new();
    let Ok((connector, mqtt_buffers)) = board_common::uplink::open(stack) else {
        halt("uplink opened twice")
    };
    #[cfg(not(feature = "tls"))]
    let mut connector = connector;
    #[cfg(feature = "tls")]
    let Ok(mut connector) = board_common::uplink::with_tls(connector, entropy) else {
        halt("invalid TLS settings")
    };
    let node = NODE.init_with(|| Node::new(device, boot, board_common::node_config(seed)));
    log!(
        "sending to {}:{}",
        settings::BROKER_HOST,
        settings::BROKER_PORT
    );
    // Started once the settings are known good: a halted board (bad settings) stays halted
    // instead of rebooting, and writing its boot counter, forever.
    let mut watchdog = Watchdog::start(WATCHDOG_S);

    let result = sensor_node_core::run(
        node,
        &mut CycleCounter::default(),
        &EmbassyClock,
        &mut connector,
        &mut LoggedHooks::new(FeedWatchdog::new(|| watchdog.feed())),
        mqtt_buffers,
        core::future::pending::<()>(),
    )
    .await;
    // `run` only returns on a configuration error (it retries network trouble forever).
    if let Err(e) = result {
        log!("node stopped: {:?}", e);
    }
    halt("node stopped")
}

/// The board's hooks (the watchdog's) plus a log line per session change and per ack, which
/// is how a person or a test watching QEMU's output sees the uplink work.
struct LoggedHooks<H> {
    inner: H,
    /// Acks seen (for the `fault-hang` injection).
    #[cfg_attr(not(feature = "fault-hang"), allow(dead_code))]
    acks: u32,
}

impl<H> LoggedHooks<H> {
    fn new(inner: H) -> Self {
        Self { inner, acks: 0 }
    }
}

impl<H: Hooks> Hooks for LoggedHooks<H> {
    fn on_wake(&mut self, now_ms: u64) {
        self.inner.on_wake(now_ms);
    }

    fn should_stop(&mut self, now_ms: u64, status: &Status) -> bool {
        self.inner.should_stop(now_ms, status)
    }

    fn on_event(&mut self, event: Event) {
        match event {
            Event::Connected => log!("MQTT connected"),
            Event::Disconnected => log!("MQTT disconnected"),
            Event::Ack(AckOutcome::Freed {
                boot,
                from,
                through,
            }) => {
                log!("acked boot {} seq {}..={}", boot, from, through);
                self.acks += 1;
                #[cfg(feature = "fault-hang")]
                if self.acks == 5 {
                    log!("fault injection: the main loop hangs now");
                    loop {
                        cortex_m::asm::nop();
                    }
                }
            }
            Event::AckTimeout => log!("ack timeout: resending"),
            _ => {}
        }
        self.inner.on_event(event);
    }
}

fn spawn<S>(
    spawner: &Spawner,
    task: Result<embassy_executor::SpawnToken<S>, embassy_executor::SpawnError>,
) {
    match task {
        Ok(token) => spawner.spawn(token),
        Err(_) => halt("task already running"),
    }
}

/// Stops for good (before the watchdog runs): logs why and sleeps.
fn halt(why: &str) -> ! {
    log!("halted: {}", why);
    loop {
        cortex_m::asm::wfi();
    }
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    hprintln!("panic: {}", info);
    loop {
        cortex_m::asm::wfi();
    }
}
