//! Crash and pause points for tests: `SILT_CRASH_AT=<name>` makes the agent
//! abort (as `kill -9` would stop it) when it reaches the named point;
//! `SILT_PAUSE_AT=<name>` stops the whole process there (SIGSTOP, as a long
//! GC pause or a frozen VM would) until it is sent SIGCONT. Tests use them
//! to stop an agent between two steps that must each be safe to stop after.
//!
//! Points: `compaction-before-put`, `compaction-before-commit`,
//! `compaction-before-delete`.

/// Aborts the process, or stops it, when the environment names this point.
/// A stop waits until `meta` is idle, so the frozen process holds no lock
/// that other agents need (an embedded store's file lock).
pub fn reached(point: &str, meta: &dyn silt_metadata::MetaStore) {
    if std::env::var("SILT_CRASH_AT").is_ok_and(|p| p == point) {
        eprintln!("SILT_CRASH_AT={point}: aborting here");
        std::process::abort();
    }
    if std::env::var("SILT_PAUSE_AT").is_ok_and(|p| p == point) {
        eprintln!("SILT_PAUSE_AT={point}: stopping here until SIGCONT");
        let me = std::process::id().to_string();
        meta.while_idle(&mut || {
            if let Err(e) = std::process::Command::new("kill").args(["-STOP", &me]).status() {
                eprintln!("could not stop: {e}");
            }
        });
    }
}
