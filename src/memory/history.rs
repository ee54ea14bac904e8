//! Memory's history: every applied config kept as a snapshot (epoch,
//! sha256, time, what applied it, the TOML text), the last N of them, on
//! disk under `<state_dir>/snapshots/` so that rollback survives restarts.
//!
//! One JSON file per snapshot, `<epoch, 20 digits>.json`, written to a
//! temporary file, synced and renamed, so a crash leaves either the whole
//! snapshot or none. At start a file that cannot be read, is not valid
//! JSON, names another epoch than its file name, or whose text does not
//! match its sha256 (truncated or edited by hand) is reported as a warning
//! and skipped: a damaged state directory never stops DAO from starting.
//! Only a state directory that cannot be created or listed is an error:
//! the operator asked for persistence and it cannot be had.
//!
//! Epochs only grow: the next one is the highest loaded plus one.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// What applied a config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config DAO started with.
    Start,
    /// The config file changed.
    File,
    /// SIGHUP.
    Signal,
    /// `POST /api/v1/config/reload`.
    Api,
    /// An operator's rollback to an earlier snapshot.
    Rollback,
    /// A guarded reload that failed its guard and was rolled back by DAO.
    Guard,
}

impl Source {
    /// The lower-case name, as in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Start => "start",
            Source::File => "file",
            Source::Signal => "signal",
            Source::Api => "api",
            Source::Rollback => "rollback",
            Source::Guard => "guard",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One applied config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its number; later snapshots have higher ones.
    pub epoch: u64,
    /// SHA-256 of `text`, lower-case hex.
    pub sha256: String,
    /// When it was applied, seconds since the Unix epoch.
    pub time_unix: u64,
    /// What applied it.
    pub source: Source,
    /// The TOML text.
    pub text: Arc<str>,
    /// Why, when there is more to say ("rolled back to 3", a guard's reason).
    pub note: Option<String>,
}

impl Snapshot {
    /// Everything but the text, as the admin API lists it; with the text
    /// under `"text"` when `with_text`.
    pub fn to_json(&self, with_text: bool) -> serde_json::Value {
        let mut v = serde_json::json!({
            "epoch": self.epoch,
            "sha256": self.sha256,
            "time_unix": self.time_unix,
            "source": self.source,
            "note": self.note,
        });
        if with_text {
            v["text"] = serde_json::Value::from(&*self.text);
        }
        v
    }
}

/// The file form of a snapshot.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    epoch: u64,
    sha256: String,
    time_unix: u64,
    source: Source,
    note: Option<String>,
    text: String,
}

/// Lower-case hex SHA-256 of a text.
pub fn sha256_hex(text: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.as_ref() {
        out.push(char::from_digit(u32::from(b >> 4), 16).expect("a nibble"));
        out.push(char::from_digit(u32::from(b & 15), 16).expect("a nibble"));
    }
    out
}

/// The applied configs, oldest first.
#[derive(Debug)]
pub struct History {
    /// `<state_dir>/snapshots`, or `None` to keep them in memory only.
    dir: Option<PathBuf>,
    keep: usize,
    snapshots: Vec<Snapshot>,
    next_epoch: u64,
}

impl History {
    /// Loads the snapshots kept in `<state_dir>/snapshots/` (creating the
    /// directories when missing), keeping the newest `keep` (at least 1)
    /// and deleting the files of older ones. With no `state_dir` the
    /// history starts empty and stays in memory. Damaged files are
    /// skipped and described in the returned warnings; the error is for a
    /// directory that cannot be created or listed.
    pub fn open(state_dir: Option<&Path>, keep: usize) -> io::Result<(History, Vec<String>)> {
        let mut history = History {
            dir: state_dir.map(|d| d.join("snapshots")),
            keep: keep.max(1),
            snapshots: Vec::new(),
            next_epoch: 1,
        };
        let mut warnings = Vec::new();
        let Some(dir) = history.dir.clone() else {
            return Ok((history, warnings));
        };
        fs::create_dir_all(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        let entries = fs::read_dir(&dir)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.display())))?;
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    warnings.push(format!("{}: {e}", dir.display()));
                    continue;
                }
            };
            let path = entry.path();
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') && name.ends_with(".tmp") {
                // A write cut short by a crash: never renamed, never used.
                match fs::remove_file(&path) {
                    Ok(()) => warnings.push(format!(
                        "{}: removed an unfinished snapshot write",
                        path.display()
                    )),
                    Err(e) => warnings.push(format!("{}: {e}", path.display())),
                }
                continue;
            }
            let Some(epoch) = file_epoch(name) else {
                continue;
            };
            match load(&path, epoch) {
                Ok(s) => history.snapshots.push(s),
                Err(why) => warnings.push(format!("{}: {why}; skipped", path.display())),
            }
        }
        history.snapshots.sort_by_key(|s| s.epoch);
        history.next_epoch = history.snapshots.last().map_or(1, |s| s.epoch + 1);
        history.prune();
        Ok((history, warnings))
    }

    /// Keeps `text` as the next snapshot: assigns its epoch, writes it
    /// (when there is a state directory) and forgets, on disk too, those
    /// beyond the newest `keep`. When writing fails nothing changes and
    /// the epoch is not used.
    pub fn record(
        &mut self,
        source: Source,
        text: &str,
        note: Option<String>,
        now_unix: u64,
    ) -> io::Result<Snapshot> {
        let snapshot = Snapshot {
            epoch: self.next_epoch,
            sha256: sha256_hex(text),
            time_unix: now_unix,
            source,
            text: text.into(),
            note,
        };
        if let Some(dir) = &self.dir {
            write(dir, &snapshot)?;
        }
        self.next_epoch += 1;
        self.snapshots.push(snapshot.clone());
        self.prune();
        Ok(snapshot)
    }

    /// The kept snapshots, oldest first.
    pub fn list(&self) -> &[Snapshot] {
        &self.snapshots
    }

    /// A kept snapshot by epoch.
    pub fn get(&self, epoch: u64) -> Option<&Snapshot> {
        self.snapshots
            .binary_search_by_key(&epoch, |s| s.epoch)
            .ok()
            .map(|i| &self.snapshots[i])
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.last()
    }

    /// The epoch the next `record` will assign.
    pub fn next_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// Where the snapshot files are, if anywhere.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// Drops the oldest snapshots beyond `keep`, and their files.
    fn prune(&mut self) {
        let excess = self.snapshots.len().saturating_sub(self.keep);
        for old in self.snapshots.drain(..excess) {
            let Some(dir) = &self.dir else { continue };
            let path = dir.join(file_name(old.epoch));
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Left behind, it is pruned again at the next start.
                Err(e) => tracing::warn!("cannot remove old snapshot {}: {e}", path.display()),
            }
        }
    }
}

fn file_name(epoch: u64) -> String {
    format!("{epoch:020}.json")
}

/// The epoch of a snapshot file's name (`<20 digits>.json`).
fn file_epoch(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Reads and checks one snapshot file.
fn load(path: &Path, epoch: u64) -> Result<Snapshot, String> {
    let bytes = fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let stored: Stored =
        serde_json::from_slice(&bytes).map_err(|e| format!("not a snapshot ({e})"))?;
    if stored.epoch != epoch {
        return Err(format!(
            "holds epoch {} but is named for {epoch}",
            stored.epoch
        ));
    }
    let sha = sha256_hex(&stored.text);
    if sha != stored.sha256 {
        return Err(format!(
            "text does not match its sha256 ({} recorded, {sha} found)",
            stored.sha256
        ));
    }
    Ok(Snapshot {
        epoch,
        sha256: sha,
        time_unix: stored.time_unix,
        source: stored.source,
        text: stored.text.into(),
        note: stored.note,
    })
}

/// Writes a snapshot file atomically: temporary file, fsync, rename,
/// fsync of the directory.
fn write(dir: &Path, s: &Snapshot) -> io::Result<()> {
    let stored = Stored {
        epoch: s.epoch,
        sha256: s.sha256.clone(),
        time_unix: s.time_unix,
        source: s.source,
        note: s.note.clone(),
        text: s.text.to_string(),
    };
    let bytes = serde_json::to_vec_pretty(&stored).map_err(io::Error::other)?;
    super::atomic::write(dir, &file_name(s.epoch), &bytes)
}

#[cfg(test)]
mod tests;
