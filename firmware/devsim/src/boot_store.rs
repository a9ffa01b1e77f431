//! Boot counters of simulated devices: one small file per device under `--state-dir`, so that
//! `(device, boot, seq)` stays unique across simulator runs against the same gateway.

use sensor_node_core::BootStore;
use std::io::Write as _;
use std::path::PathBuf;

/// A boot counter in a text file, replaced atomically (write temp, fsync, rename).
#[derive(Debug)]
pub struct FileBootStore {
    /// The counter file.
    pub path: PathBuf,
}

impl BootStore for FileBootStore {
    type Error = std::io::Error;

    fn load(&mut self) -> Result<Option<u32>, Self::Error> {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text
                .trim()
                .parse()
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn store(&mut self, boot: u32) -> Result<(), Self::Error> {
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        writeln!(file, "{boot}")?;
        file.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_node_core::start_boot;

    #[test]
    fn persists_across_starts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = FileBootStore {
            path: dir.path().join("d.boot"),
        };
        assert_eq!(start_boot(&mut store).ok(), Some(1));
        let mut again = FileBootStore {
            path: dir.path().join("d.boot"),
        };
        assert_eq!(start_boot(&mut again).ok(), Some(2));
    }
}
