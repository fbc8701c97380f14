//! A terminal for end-to-end tests: a tmux server of our own running one
//! command, whose screen is read and whose keys are sent like a user's.
//!
//! Waiting is always on a condition seen on screen, polled until
//! [`DEADLINE`]; never a sleep standing in for synchronisation.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a wait for the screen may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// A tmux server of our own (private socket), killed on drop.
pub struct Tmux {
    socket: String,
}

impl Tmux {
    pub fn start(command: &str, w: u16, h: u16) -> Tmux {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let t = Tmux {
            socket: format!(
                "straddle-e2e-{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::SeqCst)
            ),
        };
        let ok = t
            .cmd()
            // The app's denoiser is tested on its own (see cli::command).
            .env("STRADDLE_DENOISE", "off")
            .args(["new-session", "-d", "-s", "app", "-x"])
            .arg(w.to_string())
            .arg("-y")
            .arg(h.to_string())
            .arg(command)
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "tmux is not installed ({e}): tests/tui_e2e.rs drives the real binary in \
                     tmux (no model needed); install it, e.g. `apt-get install tmux`"
                )
            });
        assert!(ok.success(), "tmux new-session failed");
        t
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("tmux");
        c.args(["-L", &self.socket, "-f", "/dev/null"]);
        c
    }

    pub fn screen(&self) -> String {
        let o = self
            .cmd()
            .args(["capture-pane", "-p", "-t", "app"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn keys(&self, keys: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "app", "-l", keys])
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }

    /// A named key ("Enter", "Escape", "Tab").
    pub fn key(&self, name: &str) {
        let ok = self
            .cmd()
            .args(["send-keys", "-t", "app", name])
            .status()
            .expect("tmux send-keys");
        assert!(ok.success());
    }

    pub fn alive(&self) -> bool {
        self.cmd()
            .args(["has-session", "-t", "app"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Poll the screen until `cond` holds; panic with the last screen.
    pub fn wait_for(&self, what: &str, cond: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "timed out waiting for {what}; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn wait_exit(&self) {
        let start = Instant::now();
        while self.alive() {
            assert!(
                start.elapsed() < DEADLINE,
                "the app did not quit; screen:\n{}",
                self.screen()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self
            .cmd()
            .arg("kill-server")
            .stderr(std::process::Stdio::null())
            .status();
    }
}
