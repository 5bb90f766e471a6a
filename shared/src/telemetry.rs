//! Logging: JSON lines that Cloud Logging understands when running on Cloud Run
//! (`K_SERVICE` is set), human-readable lines otherwise. `RUST_LOG` filters both.
//!
//! Log lines carry what clients sent (object names may hold any character but NUL,
//! CR and LF), so every control character is written escaped, as `\u001b`: a name
//! cannot forge a log line or drive the terminal that shows it. That spelling is also a
//! valid escape inside JSON strings, where the JSON formatter leaves DEL and the C1
//! controls raw. In human lines a backslash is doubled as well, so a client cannot type
//! text that reads like an escaped character.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = std::env::var_os("K_SERVICE").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || EscapingWriter {
            inner: std::io::stderr(),
            double_backslashes: !json,
        });
    let _ = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

/// Writes each log line with its control characters (but the final newline) escaped.
/// The subscriber writes one whole line per call.
struct EscapingWriter<W> {
    inner: W,
    /// Human lines only: in JSON, backslashes are already escapes.
    double_backslashes: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let escaped = escape_line(line, self.double_backslashes);
        self.inner.write_all(escaped.as_bytes())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn escape_line(line: &[u8], double_backslashes: bool) -> String {
    let (body, newline) = match line.strip_suffix(b"\n") {
        Some(body) => (body, "\n"),
        None => (line, ""),
    };
    let mut escaped = String::with_capacity(line.len());
    for c in String::from_utf8_lossy(body).chars() {
        if c.is_control() && c != '\t' {
            escaped.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else if c == '\\' && double_backslashes {
            escaped.push_str("\\\\");
        } else {
            escaped.push(c);
        }
    }
    escaped.push_str(newline);
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_cannot_reach_the_log() {
        let line = "INFO object=evil\u{1b}[2J\rfake\u{9b}line \\r\n";
        assert_eq!(
            escape_line(line.as_bytes(), true),
            "INFO object=evil\\u001b[2J\\u000dfake\\u009bline \\\\r\n"
        );
        let mut out = Vec::new();
        EscapingWriter {
            inner: &mut out,
            double_backslashes: true,
        }
        .write_all(b"a\x07b\n")
        .expect("write");
        assert_eq!(out, b"a\\u0007b\n");
    }

    #[test]
    fn escaped_json_lines_stay_valid_json() {
        // What the JSON formatter writes for a name holding DEL and a C1 control.
        let line = "{\"object\":\"a\u{7f}b\u{9b}c\\\\d\"}\n";
        let escaped = escape_line(line.as_bytes(), false);
        let parsed: serde_json::Value = serde_json::from_str(&escaped).expect("valid JSON");
        assert_eq!(parsed["object"], "a\u{7f}b\u{9b}c\\d");
    }
}
