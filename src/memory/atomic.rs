//! Whole-file writes for the state directory: a crash leaves the old file
//! or the new one, never a part of either.

use std::fs;
use std::io::{self, Write as _};
use std::path::Path;

/// Writes `<dir>/<name>`: to `<dir>/.<name>.tmp` first, synced, renamed
/// over the target, then the directory synced so that the rename itself
/// is durable. The temporary file is removed on failure; errors name the
/// target.
pub(crate) fn write(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, dir.join(name))?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", dir.join(name).display())))
}
