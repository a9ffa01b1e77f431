//! Logging macros: defmt with the `defmt` feature, nothing otherwise. Log arguments must not
//! have side effects (they are not evaluated without the feature).

macro_rules! log_debug {
    ($($arg:tt)*) => {{
        #[cfg(feature = "defmt")]
        {
            defmt::debug!($($arg)*);
        }
    }};
}

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

pub(crate) use {log_debug, log_info, log_warn};
