//! Link scripts: cortex-m-rt's `link.x` (with embassy-stm32's generated `memory.x`) and defmt's.
//! The build-time settings (`FW_*`) are read by `board-common`'s build script.

fn main() {
    println!("cargo::rustc-link-arg-bins=--nmagic");
    println!("cargo::rustc-link-arg-bins=-Tlink.x");
    println!("cargo::rustc-link-arg-bins=-Tdefmt.x");
}
