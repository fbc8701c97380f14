//! The peers bench's fake OpenAI-compatible server (`benches/peers/run.sh`).
//!
//! ```text
//! cargo run --release --example peers_server -- [--port N] [--latency-ms MS]
//! ```
//!
//! The test server of `tests/support` (axum, one thread, a streamed reply
//! written as one body) answering every chat completion, streaming or not,
//! with a reply straddle's parsers take:
//!
//! * a relabel prompt (a `Text: …` line) gets `{"label": "<class>"}`, the
//!   first class the prompt lists;
//! * any other prompt gets a numbered list of as many questions as it asks
//!   for ("Write N new …", else one), each different from every other the
//!   server has sent (words drawn from the request's index), so nothing is
//!   dropped as a duplicate and `generate --count N --per-request 1` sends
//!   exactly N requests.
//!
//! `--latency-ms` delays each reply's start. Prints
//! `listening on http://127.0.0.1:PORT/v1` once ready; serves until killed.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::io::Write;
use std::time::Duration;

use support::{Reply, Script, TestServer};

const WH: [&str; 6] = ["What", "Which", "Who", "Where", "When", "How"];
const VERB: [&str; 16] = [
    "built", "painted", "named", "found", "opened", "wrote", "sold", "moved", "won", "lost",
    "drew", "carried", "measured", "crossed", "owned", "closed",
];
const ADJ: [&str; 16] = [
    "old", "tall", "famous", "small", "red", "northern", "oldest", "largest", "quiet", "busy",
    "narrow", "ancient", "modern", "hidden", "royal", "wooden",
];
const NOUN: [&str; 24] = [
    "bridge",
    "tower",
    "river",
    "museum",
    "library",
    "harbour",
    "castle",
    "stadium",
    "canal",
    "market",
    "island",
    "temple",
    "garden",
    "lighthouse",
    "railway",
    "theatre",
    "school",
    "mill",
    "palace",
    "station",
    "forest",
    "lake",
    "valley",
    "mountain",
];
const PLACE: [&str; 20] = [
    "Lisbon", "Oslo", "Quebec", "Cairo", "Lima", "Perth", "Kyoto", "Dublin", "Porto", "Riga",
    "Tunis", "Hanoi", "Cusco", "Bergen", "Turin", "Malmo", "Delhi", "Quito", "Leeds", "Graz",
];

fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The `k`-th question of request `i`: unique per (i, k) through the year.
fn question(i: usize, k: usize) -> String {
    let n = (i * 64 + k) as u64;
    let h = mix(n);
    let pick = |words: &[&'static str], shift: u32| words[(h >> shift) as usize % words.len()];
    format!(
        "{} {} the {} {} near {} in {}?",
        pick(&WH, 0),
        pick(&VERB, 8),
        pick(&ADJ, 16),
        pick(&NOUN, 24),
        pick(&PLACE, 32),
        1000 + n
    )
}

/// How many texts a generation prompt asks for ("Write N new").
fn asked(prompt: &str) -> usize {
    prompt
        .split("Write ")
        .skip(1)
        .find_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or(1)
        .clamp(1, 64)
}

fn reply(r: &support::Request) -> Reply {
    let prompt = r.last_message();
    if prompt.lines().any(|l| l.starts_with("Text: ")) {
        let class = prompt
            .lines()
            .find_map(|l| l.strip_prefix("- "))
            .map(|c| c.split(':').next().unwrap_or(c).trim())
            .unwrap_or("unknown");
        return Reply::text(format!("{{\"label\": \"{class}\"}}"));
    }
    let n = asked(prompt);
    let mut text = String::new();
    for k in 0..n {
        if k > 0 {
            text.push('\n');
        }
        text.push_str(&format!("{}. {}", k + 1, question(r.index, k)));
    }
    Reply::text(text)
}

fn main() {
    let mut port = 0u16;
    let mut latency_ms = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| die(&format!("{what} needs a number")))
        };
        match a.as_str() {
            "--port" => port = num("--port") as u16,
            "--latency-ms" => latency_ms = num("--latency-ms"),
            "-h" | "--help" => {
                println!("peers_server [--port N] [--latency-ms MS]");
                return;
            }
            other => die(&format!("unknown argument '{other}'")),
        }
    }
    let script = Script::with_fn(reply).latency(Duration::from_millis(latency_ms));
    let server = TestServer::start_on(port, script, false);
    println!("listening on {}", server.base_url());
    std::io::stdout().flush().ok();
    loop {
        std::thread::park();
    }
}

fn die(msg: &str) -> ! {
    eprintln!("peers_server: {msg}");
    std::process::exit(2);
}
