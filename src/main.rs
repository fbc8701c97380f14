use clap::Parser;

fn main() {
    let cli = straddle::cli::Cli::parse();
    match straddle::cli::run(cli) {
        Ok(()) => {}
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::exit(straddle::error::exit_code(&err));
        }
    }
}
