//! `[memory]`: the state directory, how many applied configs are kept and
//! how often learned profiles are written.

use std::path::PathBuf;
use std::time::Duration;

use super::super::config::Memory;
use super::super::raw::RawMemory;
use super::Validator;

/// Shortest and longest `profile_interval`.
const PROFILE_INTERVAL: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(24 * 3600));

impl Validator {
    pub(super) fn memory(&mut self, raw: RawMemory) -> Memory {
        let state_dir = raw.state_dir.and_then(|text| {
            if text.trim().is_empty() {
                self.err(
                    "memory.state_dir",
                    "must not be empty; leave it out to keep state in memory only",
                );
                return None;
            }
            let path = PathBuf::from(text);
            // A missing directory is created at start; something else in
            // its place cannot be.
            match std::fs::metadata(&path) {
                Ok(m) if !m.is_dir() => {
                    self.err(
                        "memory.state_dir",
                        format!("{} exists and is not a directory", path.display()),
                    );
                    None
                }
                _ => Some(path),
            }
        });
        let snapshots_keep =
            self.count("memory.snapshots_keep", raw.snapshots_keep, (1, 10_000), 20);
        let profile_interval = self.duration(
            "memory.profile_interval",
            raw.profile_interval,
            Duration::from_secs(60),
        );
        if profile_interval < PROFILE_INTERVAL.0 || profile_interval > PROFILE_INTERVAL.1 {
            self.err("memory.profile_interval", "must be between 1s and 1d");
        }
        Memory {
            state_dir,
            snapshots_keep,
            profile_interval,
        }
    }
}
