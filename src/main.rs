use clap::{CommandFactory, FromArgMatches};

/// mimalloc instead of the system allocator: opening a project builds
/// ~15 small allocations per sample (texts, labels, provenance, verdicts),
/// which mimalloc serves markedly faster than glibc malloc (see
/// `benches/journal.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `mi_option_purge_delay` (`mimalloc.h`, v3; `libmimalloc-sys`
/// names no constant for it). The test below checks the index.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Give pages back to the system as soon as they are free, not a second
/// later. Past mimalloc's default delay (1000 ms) a purge is only carried
/// out the next time some thread frees a whole page: a TUI at rest frees
/// none, so
/// what a background job (the judges' measure, `T`, `E`, the map) freed as
/// it ended stayed resident until the next job and the steps of a session
/// stacked (`scripts/rss-session.sh` prints RSS at rest after each step).
/// Only whole free pages are purged, not the blocks a thread keeps in its
/// pages, so the steady allocate/free of generation reuses its pages as
/// before. A `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn purge_freed_pages_at_once() {
    // SAFETY: sets one of mimalloc's option values (a plain store) unless
    // the environment set it; the index is the purge delay's (test below).
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0) }
}

fn main() {
    purge_freed_pages_at_once();
    // Before anything else, so every tracing call lands in the file.
    let log = straddle::logging::init();
    let where_ = match &log {
        Some(p) => format!("Log file: {}", p.display()),
        None => match straddle::logging::log_path() {
            Some(p) => format!("Log file: {} (cannot be opened; not logging)", p.display()),
            None => "Log file: none (no home folder found)".to_string(),
        },
    };
    let help = format!(
        "{where_}\n  (set STRADDLE_LOG_FILE to move it, STRADDLE_LOG=debug for more detail)"
    );
    let matches = straddle::cli::Cli::command().after_help(help).get_matches();
    let cli = match straddle::cli::Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    match straddle::run(cli) {
        Ok(()) => {}
        Err(err) => {
            tracing::error!("{err:#}");
            straddle::cli::out::write(true, &format!("error: {err:#}\n"));
            std::process::exit(straddle::error::exit_code(&err));
        }
    }
}

#[cfg(test)]
mod tests {
    /// The index is the purge delay's: its default, 1000 ms, is no other
    /// option's.
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
            return;
        }
        // SAFETY: reads an option value.
        let v = unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        assert_eq!(v, 1000);
    }
}
