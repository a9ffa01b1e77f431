//! The export's counters, all named `gateway_export_*` (see README "Metrics").

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;

/// Export metrics. Cheap to clone (shared handles).
#[derive(Debug, Clone, Default)]
pub struct ExportMetrics {
    /// Readings written to export files.
    pub readings: Counter,
    /// Export files committed.
    pub files: Counter,
    /// Bytes of committed export files.
    pub bytes: Counter,
    /// Readings deleted from the buffer after their export was durable.
    pub readings_deleted: Counter,
    /// Runs that failed (nothing is lost: the readings stay buffered and are retried).
    pub runs_failed: Counter,
}

impl ExportMetrics {
    /// Registers the metrics (clones share the values, so register any clone).
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("gateway_export");
        r.register(
            "readings",
            "Readings written to export files",
            self.readings.clone(),
        );
        r.register("files", "Export files committed", self.files.clone());
        r.register(
            "bytes",
            "Bytes of committed export files",
            self.bytes.clone(),
        );
        r.register(
            "readings_deleted",
            "Readings deleted from the buffer after their export was durable",
            self.readings_deleted.clone(),
        );
        r.register(
            "runs_failed",
            "Export runs that failed (readings stay buffered and are retried)",
            self.runs_failed.clone(),
        );
    }

    /// Counts a finished (or stopped) run.
    pub fn observe(&self, s: &super::ExportSummary) {
        self.readings.inc_by(s.readings);
        self.files.inc_by(s.files);
        self.bytes.inc_by(s.bytes);
        self.readings_deleted.inc_by(s.deleted_readings);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exposed_with_the_stage_prefix() {
        let m = ExportMetrics::default();
        let mut registry = Registry::default();
        m.register(&mut registry);
        m.readings.inc_by(3);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).expect("encode");
        assert!(text.contains("gateway_export_readings_total 3"), "{text}");
        assert!(
            text.contains("gateway_export_runs_failed_total 0"),
            "{text}"
        );
    }
}
