//! Text an agent wrote, made safe to print on an operator's terminal.
//!
//! Agents are untrusted: a raw ESC, BEL or CR in their output could retitle the window, move
//! the cursor or overwrite what clrk printed. It lives here because both printers of agent
//! output depend on this crate: `clrk dev`'s terminal and the CLI's `agents logs`.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with every C0 control (but TAB), DEL and C1 control written as an escape:
/// `\r`, `\n`, `\x1b`, `\u{9b}`. Other text, backslashes included, is unchanged.
///
/// ```
/// use clrk_server::terminal::escape_controls;
/// assert_eq!(escape_controls("\x1b]0;pwned\x07 a\tb\r"), "\\x1b]0;pwned\\x07 a\tb\\r");
/// assert_eq!(escape_controls("plain"), "plain");
/// ```
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_escaped) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\r' => out.push_str(r"\r"),
            '\n' => out.push_str(r"\n"),
            c if is_escaped(c) && (c as u32) < 0x80 => {
                let _ = write!(out, r"\x{:02x}", c as u32);
            }
            c if is_escaped(c) => {
                let _ = write!(out, r"\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_escaped(c: char) -> bool {
    c != '\t' && c.is_control()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_control_but_tab_is_escaped() {
        for c in (0u32..0x20).chain(0x7f..0xa0).filter_map(char::from_u32) {
            let escaped = escape_controls(&c.to_string()).into_owned();
            if c == '\t' {
                assert_eq!(escaped, "\t");
            } else {
                assert!(escaped.starts_with('\\'), "{c:?} -> {escaped:?}");
                assert!(
                    !escaped.chars().any(char::is_control),
                    "{c:?} -> {escaped:?}"
                );
            }
        }
        assert_eq!(escape_controls("\u{9b}2J"), r"\u{9b}2J");
        assert_eq!(escape_controls("é ✓"), "é ✓");
    }
}
