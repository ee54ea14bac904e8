//! Signals: SIGTERM and SIGINT ask for a graceful stop; a second one
//! exits at once. SIGHUP asks for the config file to be read again.

use std::io;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

/// Sets `stop` on the first SIGTERM/SIGINT; exits with status 1 on the
/// second.
pub fn install(stop: &Arc<AtomicBool>) -> io::Result<()> {
    for sig in [SIGTERM, SIGINT] {
        // Registered first so that it sees the flag before it is set.
        signal_hook::flag::register_conditional_shutdown(sig, 1, stop.clone())?;
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(())
}

/// Sets `hup` on every SIGHUP (the reload thread clears it).
pub fn install_reload(hup: &Arc<AtomicBool>) -> io::Result<()> {
    signal_hook::flag::register(SIGHUP, hup.clone())?;
    Ok(())
}
