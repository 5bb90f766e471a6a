//! Logging: JSON lines that Cloud Logging understands when running on Cloud Run
//! (`K_SERVICE` is set), human-readable lines otherwise. `RUST_LOG` filters both.
//!
//! Log lines carry what clients sent (object names may hold any character but NUL,
//! CR and LF), so every control character is written escaped: a name cannot forge a
//! log line or drive the terminal that shows it.

use std::io::Write;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls are no-ops (tests call it freely).
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(|| EscapingWriter(std::io::stderr()));
    let _ = if std::env::var_os("K_SERVICE").is_some() {
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
struct EscapingWriter<W>(W);

impl<W: Write> Write for EscapingWriter<W> {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        self.0.write_all(escape_line(line).as_bytes())?;
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

fn escape_line(line: &[u8]) -> String {
    let (body, newline) = match line.strip_suffix(b"\n") {
        Some(body) => (body, "\n"),
        None => (line, ""),
    };
    let mut escaped = String::with_capacity(line.len());
    for c in String::from_utf8_lossy(body).chars() {
        if c.is_control() && c != '\t' {
            escaped.extend(c.escape_default());
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
        let line = "INFO object=evil\u{1b}[2J\rfake\u{9b}line\n";
        assert_eq!(
            escape_line(line.as_bytes()),
            "INFO object=evil\\u{1b}[2J\\rfake\\u{9b}line\n"
        );
        let mut out = Vec::new();
        EscapingWriter(&mut out)
            .write_all(b"a\x07b\n")
            .expect("write");
        assert_eq!(out, b"a\\u{7}b\n");
    }
}
