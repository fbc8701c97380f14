use clap::{CommandFactory, FromArgMatches};

/// mimalloc instead of the system allocator: opening a project builds
/// ~15 small allocations per sample (texts, labels, provenance, verdicts),
/// which mimalloc serves markedly faster than glibc malloc (see
/// `benches/journal.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
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
