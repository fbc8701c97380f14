//! The real `straddle` binary, as a user runs it.
//!
//! ```ignore
//! use support::cli::{ok, run_ok, straddle};
//! let out = straddle(&["stats", d, "--json"]);    // &str, String, &Path… (one type a call)
//! let stdout = ok(&out);                           // asserts success, shows stderr if not
//! support::cli::init_example(&dir, "trec6", &server.base_url(), Some(MODEL));
//! support::cli::edit_config(&dir, |t| { t["backend"]["max_retries"] = 0.into(); });
//! ```

use std::ffi::OsStr;
use std::path::Path;
use std::process::{Command, Output};

/// Path of the binary under test. Cargo sets it for integration tests and
/// benches; the test server example, which shares this folder, never runs
/// the binary.
pub fn bin() -> &'static str {
    match option_env!("CARGO_BIN_EXE_straddle") {
        Some(path) => path,
        None => panic!("only integration tests and benches run the binary"),
    }
}

/// The binary with `args`, ready for more (`.env(…)`, `.stdin(…)`).
pub fn command<S: AsRef<OsStr>>(args: &[S]) -> Command {
    let mut c = Command::new(bin());
    c.args(args);
    // The denoiser (real embeddings) is tested on its own; elsewhere
    // generated counts must not depend on it.
    c.env("STRADDLE_DENOISE", "off");
    c
}

/// Run the binary with `args` to completion with the denoiser in `mode`
/// (`reject`, `flag` or `off`; [`command`] turns it off): for the tests of
/// the denoiser itself, with the real embedder.
pub fn straddle_denoised<S: AsRef<OsStr>>(args: &[S], mode: &str) -> Output {
    command(args)
        .env("STRADDLE_DENOISE", mode)
        .output()
        .expect("run straddle")
}

/// Run the binary with `args` to completion.
pub fn straddle<S: AsRef<OsStr>>(args: &[S]) -> Output {
    command(args).output().expect("run straddle")
}

/// Asserts `out` succeeded (else shows its exit code and both streams);
/// returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "expected success, got {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Run `args`, assert success, return stdout.
pub fn run_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    ok(&straddle(args))
}

/// Asserts exit code 2 (a user error) and that stderr contains every
/// needle; returns stderr.
pub fn bad(out: &Output, needles: &[&str]) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "expected exit 2; stderr: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    err
}

/// `straddle init DIR --example NAME --base-url URL [--model MODEL]`.
pub fn init_example(dir: &Path, example: &str, base_url: &str, model: Option<&str>) {
    let mut args: Vec<&OsStr> = vec![
        "init".as_ref(),
        dir.as_os_str(),
        "--example".as_ref(),
        example.as_ref(),
        "--base-url".as_ref(),
        base_url.as_ref(),
    ];
    if let Some(m) = model {
        args.extend([OsStr::new("--model"), OsStr::new(m)]);
    }
    ok(&straddle(&args));
}

/// Change the project's `straddle.toml` as a TOML table.
pub fn edit_config(dir: &Path, f: impl FnOnce(&mut toml::Table)) {
    let path = dir.join("straddle.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut cfg: toml::Table = toml::from_str(&text).unwrap();
    f(&mut cfg);
    std::fs::write(&path, toml::to_string(&cfg).unwrap()).unwrap();
}

/// A `[section]` of a config table, created when missing.
pub fn section<'a>(cfg: &'a mut toml::Table, name: &str) -> &'a mut toml::Table {
    cfg.entry(name)
        .or_insert_with(|| toml::Value::Table(Default::default()))
        .as_table_mut()
        .expect("a table")
}

/// A TCP port nothing listens on (bound, then released).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}
