//! Link scripts: cortex-m-rt's `link.x` with this board's `memory.x` (QEMU's mps2-an386 map)
//! and an empty `device.x` (the interrupt vectors are defined in `src/interrupts.rs`). The
//! build-time settings (`FW_*`) are read by `board-common`'s build script.

use std::path::PathBuf;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("memory.x"), include_bytes!("memory.x")).expect("writable OUT_DIR");
    std::fs::write(out.join("device.x"), b"/* vectors: src/interrupts.rs */\n")
        .expect("writable OUT_DIR");
    println!("cargo::rustc-link-search={}", out.display());
    println!("cargo::rerun-if-changed=memory.x");
    println!("cargo::rustc-link-arg-bins=--nmagic");
    println!("cargo::rustc-link-arg-bins=-Tlink.x");
}
