//! The test LLM server as a standalone process, for end-to-end tests that
//! drive the real binary (e.g. the TUI under tmux).
//!
//! ```text
//! cargo run --example test_llm_server -- [--port N] [--script FILE]
//! ```
//!
//! `FILE` is JSON (see `ScriptFile` in `tests/support/mod.rs`), e.g.
//! `{"replies": [{"kind": "text", "text": "1. hello\n2. world"}], "token_delay_ms": 5}`.
//! Without a script every request gets "ok". Prints
//! `listening on http://127.0.0.1:PORT/v1` once ready and serves until killed.

#[path = "../tests/support/mod.rs"]
mod support;

use std::io::Write;

fn main() {
    let mut port = 0u16;
    let mut script = support::ScriptFile::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--port" => {
                port = args
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap_or_else(|| die("--port needs a number"));
            }
            "--script" => {
                let path = args.next().unwrap_or_else(|| die("--script needs a file"));
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| die(&format!("cannot read {path}: {e}")));
                script = serde_json::from_str(&text)
                    .unwrap_or_else(|e| die(&format!("{path}: not a script: {e}")));
            }
            "-h" | "--help" => {
                println!("test_llm_server [--port N] [--script FILE]");
                return;
            }
            other => die(&format!("unknown argument '{other}'")),
        }
    }
    let server = support::TestServer::start_on(port, script.into_script(), false);
    println!("listening on {}", server.base_url());
    std::io::stdout().flush().ok();
    loop {
        std::thread::park();
    }
}

fn die(msg: &str) -> ! {
    eprintln!("test_llm_server: {msg}");
    std::process::exit(2);
}
