//! defmt with the `defmt` feature, nothing otherwise (arguments are then not evaluated).

macro_rules! log_info {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        {
            defmt::info!($($arg)*);
        }
    }};
}

macro_rules! log_warn {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        {
            defmt::warn!($($arg)*);
        }
    }};
}

pub(crate) use {log_info, log_warn};
