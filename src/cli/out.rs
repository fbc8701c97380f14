//! Everything the CLI prints goes through [`clean`]: registered secrets
//! are redacted ([`crate::secrets::redact`]) and control characters are
//! escaped, so neither a server's reply, a class name, a file name nor a
//! journal line can retitle the terminal, move its cursor or hide text
//! (`ESC ]0;pwned BEL` prints as `\u{1b}]0;pwned\u{7}`). Newlines and
//! tabs are kept: they are how the output is laid out.
//!
//! Use the [`outln!`](crate::outln) / [`errln!`](crate::errln) /
//! [`out!`](crate::out) macros instead of `println!` & co.; they also treat
//! a closed pipe (`straddle eval --json | head -1`) as the end of output
//! rather than a panic.

use std::io::Write;

pub use crate::secrets::{clean, escape_controls};

/// Write `text` cleaned to stdout (`err` false) or stderr. A closed pipe
/// ends the process quietly (exit 0): the reader has what it wanted.
pub fn write(err: bool, text: &str) {
    let text = clean(text);
    let res = if err {
        let mut e = std::io::stderr().lock();
        e.write_all(text.as_bytes()).and_then(|_| e.flush())
    } else {
        let mut o = std::io::stdout().lock();
        o.write_all(text.as_bytes()).and_then(|_| o.flush())
    };
    if let Err(e) = res
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `println!` through [`clean`].
#[macro_export]
macro_rules! outln {
    () => { $crate::cli::out::write(false, "\n") };
    ($($t:tt)*) => { $crate::cli::out::write(false, &format!("{}\n", format_args!($($t)*))) };
}

/// `print!` through [`clean`].
#[macro_export]
macro_rules! out {
    ($($t:tt)*) => { $crate::cli::out::write(false, &format!($($t)*)) };
}

/// `eprintln!` through [`clean`].
#[macro_export]
macro_rules! errln {
    ($($t:tt)*) => { $crate::cli::out::write(true, &format!("{}\n", format_args!($($t)*))) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    #[test]
    fn escapes_terminal_controls_but_keeps_layout() {
        assert_eq!(
            escape_controls("a\x1b]0;pwned\x07b\n\tc\r"),
            "a\\u{1b}]0;pwned\\u{7}b\n\tc\\r"
        );
        assert_eq!(escape_controls("x\u{202E}y"), "x\\u{202e}y");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn clean_redacts_registered_secrets() {
        crate::secrets::register("out-test-secret-99");
        assert_eq!(clean("k=out-test-secret-99\x1b"), "k=[redacted]\\u{1b}");
    }
}
