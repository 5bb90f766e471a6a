//! Logging: JSON lines that Cloud Logging understands when running on Cloud Run
//! (`K_SERVICE` is set) or when `MERIDIAN_LOG_FORMAT=json` (edge VMs, whose logging
//! agent reads JSON too), human-readable lines otherwise. `RUST_LOG` filters both.
//! Cloud Logging reads an entry's level from a `severity` field with its own names
//! (`WARNING`, not `WARN`), so JSON lines carry that instead of tracing's `level`.
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
    // rustls warns about what clients do wrong (an IP address sent as the TLS server
    // name, as curl and wrk do when given one): a line per connection that any client
    // can cause, and nothing the server can fix.
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rustls=error"));
    let json = std::env::var_os("K_SERVICE").is_some()
        || std::env::var("MERIDIAN_LOG_FORMAT").is_ok_and(|format| format == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(move || EscapingWriter {
            inner: std::io::stderr(),
            json,
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
    /// JSON lines (Cloud Run): backslashes are already escapes there, and the level
    /// becomes Cloud Logging's `severity`.
    json: bool,
}

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut escaped = escape_line(line, !self.json);
        if self.json {
            escaped = with_severity(&escaped);
        }
        self.inner.write_all(escaped.as_bytes())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Replaces the formatter's `"level":"WARN"` (its own field, written before any of the
/// event's) with Cloud Logging's `"severity":"WARNING"`.
fn with_severity(line: &str) -> String {
    const LEVELS: [(&str, &str); 5] = [
        ("TRACE", "DEBUG"),
        ("DEBUG", "DEBUG"),
        ("INFO", "INFO"),
        ("WARN", "WARNING"),
        ("ERROR", "ERROR"),
    ];
    for (level, severity) in LEVELS {
        let field = format!("\"level\":\"{level}\"");
        if let Some(at) = line.find(&field) {
            return format!(
                "{}\"severity\":\"{severity}\"{}",
                &line[..at],
                &line[at + field.len()..]
            );
        }
    }
    line.to_string()
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
            json: false,
        }
        .write_all(b"a\x07b\n")
        .expect("write");
        assert_eq!(out, b"a\\u0007b\n");
    }

    #[test]
    fn json_lines_carry_cloud_loggings_severity() {
        let mut out = Vec::new();
        EscapingWriter {
            inner: &mut out,
            json: true,
        }
        .write_all(b"{\"timestamp\":\"t\",\"level\":\"WARN\",\"message\":\"level\",\"object\":\"\\\"level\\\":\\\"INFO\\\"\"}\n")
        .expect("write");
        let entry: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
        assert_eq!(entry["severity"], "WARNING");
        assert!(entry.get("level").is_none());
        assert_eq!(
            entry["object"], "\"level\":\"INFO\"",
            "event fields untouched"
        );
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
