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
/// out the next time some thread frees or abandons a page: a TUI at rest
/// does neither, so what a background job (the judges' measure, `T`, `E`,
/// the map) freed stayed resident until its thread exited, 10 s later
/// (tokio's keep-alive), and a step started soon after stacked on it
/// (`scripts/rss-session.sh` prints RSS at rest after each step: after the
/// measure 355 MB for 10 s, now 249 MB as it answers).
/// Only whole free pages are purged, not the blocks a thread keeps in its
/// pages, so the steady allocate/free of generation reuses its pages as
/// before. A `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn purge_freed_pages_at_once() {
    // SAFETY: sets one of mimalloc's option values (a plain store) unless
    // the environment set it; the index is the purge delay's (test below).
    unsafe { libmimalloc_sys::mi_option_set_default(MI_OPTION_PURGE_DELAY, 0) }
}

/// No transparent huge pages for this process. mimalloc asks the kernel
/// for them on its arenas (`madvise(MADV_HUGEPAGE)`, its `allow_thp`
/// option, on by default), so the first touch of a 4 KB page made a
/// 2 MB one resident: opening the 200,000-sample project held 157 MB
/// where its live data needs 136 (`straddle stats`, max RSS; 145 → 131 on
/// one thread), for the same CPU time. mimalloc reads that option when it
/// starts, before `main`, so this sets what it would have set itself with
/// `MIMALLOC_ALLOW_THP=0`: the kernel's per-process switch, which holds
/// for every page touched from now on, the arenas already reserved too.
/// A `MIMALLOC_ALLOW_THP` in the environment still wins.
fn no_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        const PR_SET_THP_DISABLE: std::ffi::c_int = 41;
        const ONE: std::ffi::c_ulong = 1;
        const ZERO: std::ffi::c_ulong = 0;
        unsafe extern "C" {
            fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
        }
        // SAFETY: `prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0)` sets one flag of
        // this process (as mimalloc does for `allow_thp=0`); a kernel
        // without it answers -1, and the process goes on with THP.
        unsafe {
            prctl(PR_SET_THP_DISABLE, ONE, ZERO, ZERO, ZERO);
        }
    }
}

fn main() {
    purge_freed_pages_at_once();
    no_transparent_huge_pages();
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
    /// After it, the kernel reports THP off for the process.
    #[cfg(target_os = "linux")]
    #[test]
    fn transparent_huge_pages_are_off() {
        if std::env::var_os("MIMALLOC_ALLOW_THP").is_some() {
            return;
        }
        super::no_transparent_huge_pages();
        const PR_GET_THP_DISABLE: std::ffi::c_int = 42;
        const ZERO: std::ffi::c_ulong = 0;
        unsafe extern "C" {
            fn prctl(option: std::ffi::c_int, ...) -> std::ffi::c_int;
        }
        // SAFETY: reads one flag of this process.
        let off = unsafe { prctl(PR_GET_THP_DISABLE, ZERO, ZERO, ZERO, ZERO) };
        assert_eq!(off, 1);
    }

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
