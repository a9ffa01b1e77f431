//! The crate's unit and protocol tests as plain functions, for running them on a microcontroller
//! without the test harness: `firmware/qemu-tests` runs [`ALL`] on a Cortex-M4 under QEMU.
//!
//! The bodies are the `#[cfg_attr(test, test)]` functions beside the code (and in
//! `protocol_tests.rs`), so `cargo test` on the host and the target runner execute the same
//! code. A test passes by returning and fails by panicking, as under `cargo test`. Every such
//! function must be listed here: `firmware/ci.sh` compares the number the target ran with the
//! number the sources define.

/// One test: where it lives and its body.
#[derive(Debug, Clone, Copy)]
pub struct Test {
    /// Path of the test function, e.g. `crate::ring::tests::push_assigns_consecutive_seqs`.
    pub name: &'static str,
    /// The test body; panics on failure.
    pub run: fn(),
}

macro_rules! tests {
    ($($path:path),* $(,)?) => {
        &[$(Test { name: stringify!($path), run: $path }),*]
    };
}

/// Every test of the crate, in source order.
pub const ALL: &[Test] = tests![
    crate::protocol_tests::batches_fill_then_wait_for_the_interval,
    crate::protocol_tests::nothing_is_sent_while_disconnected,
    crate::protocol_tests::overflow_drops_oldest_and_reports_the_count_once,
    crate::protocol_tests::drops_of_sent_readings_move_the_cursor,
    crate::protocol_tests::acks_are_cumulative_and_stale_or_foreign_ones_free_nothing,
    crate::protocol_tests::acks_of_unsent_but_recorded_readings_are_refused,
    crate::protocol_tests::reconnect_resends_everything_unacked_in_order,
    crate::protocol_tests::ack_timeout_goes_back_to_the_oldest_unacked,
    crate::protocol_tests::no_timeout_when_nothing_is_in_flight,
    crate::protocol_tests::window_limits_readings_in_flight,
    crate::protocol_tests::batches_respect_the_contract_limits,
    crate::protocol_tests::non_finite_values_are_refused_and_counted,
    crate::protocol_tests::end_to_end_with_a_lossy_gateway_model,
    crate::protocol_tests::plan_reports_resent_counts,
    crate::ring::tests::push_assigns_consecutive_seqs,
    crate::ring::tests::overflow_drops_oldest_and_counts_each_once,
    crate::ring::tests::ack_is_cumulative_and_ignores_stale_and_unassigned,
    crate::ring::tests::runtime_limit_caps_the_capacity,
    crate::ring::tests::span_crosses_the_wrap_point,
    crate::ring::tests::sequence_space_ends_at_u32_max,
    crate::ring::tests::documented_sizes_hold,
    crate::batch::tests::round_trips_through_the_decoder,
    crate::batch::tests::worst_case_full_batch_fits_the_uplink_limit,
    crate::batch::tests::small_buffer_and_stale_plan_are_errors_not_panics,
    crate::boot::tests::increments_and_persists_every_start,
    crate::boot::tests::refuses_to_reuse_a_boot_number,
    crate::boot::tests::storage_failures_stop_the_boot,
    crate::backoff::tests::grows_to_the_cap_with_bounded_jitter_and_resets,
    crate::backoff::tests::same_seed_same_delays_different_seed_differs,
    crate::backoff::tests::never_overflows,
    crate::rng::tests::deterministic_and_bounded,
    crate::sampler::tests::samples_on_schedule_with_conversion_time,
    crate::sampler::tests::catches_up_a_little_then_skips,
    crate::sampler::tests::sensor_errors_are_counted_not_recorded,
    crate::config::tests::setters_clamp,
    crate::sensor::crc_tests::datasheet_example,
    crate::sensor::sht4x_tests::conversion_formulas_match_the_datasheet_end_points,
    crate::sensor::sht4x_tests::word_checks_the_crc,
];

/// The TLS layer's tests (feature `tls`): DER parsing, the pinned-CA check with real P-256
/// signatures, and the cancel-safe record pipe.
#[cfg(feature = "tls")]
pub const TLS: &[Test] = tests![
    crate::tls::x509::tests::names_parse_as_dns_or_ipv4,
    crate::tls::x509::tests::lengths_are_checked,
    crate::tls::x509::tests::garbage_is_refused_without_panicking,
    crate::tls::pinned_ca::tests::the_sites_gateway_is_accepted_by_its_dns_name_and_its_ip,
    crate::tls::pinned_ca::tests::another_name_another_site_or_a_device_certificate_is_refused,
    crate::tls::pinned_ca::tests::only_a_self_signed_p256_ca_can_be_pinned,
    crate::tls::pinned_ca::tests::device_credentials_must_match_their_certificate,
    crate::tls::record_pipe::tests::records_reach_tls_whole_however_reads_are_cancelled,
    crate::tls::record_pipe::tests::a_record_larger_than_the_buffer_is_refused,
    crate::tls::record_pipe::tests::cancelled_flushes_lose_nothing_and_a_lost_record_breaks_the_pipe,
];

/// Every test this build has: [`ALL`], then the TLS tests when the feature is on.
pub fn every() -> impl Iterator<Item = &'static Test> {
    #[cfg(feature = "tls")]
    let tls = TLS;
    #[cfg(not(feature = "tls"))]
    let tls: &[Test] = &[];
    ALL.iter().chain(tls)
}
