//! Escaping text for HTML and XML (the status page, Cloud Storage's XML error
//! documents): one rule for both, so text from a config or a client cannot become
//! markup in either.

/// `text` with `& < > " '` as character references, safe in element content and in
/// quoted attribute values of HTML and XML. Control characters, which XML 1.0 cannot
/// carry even as references, are written as Rust escapes (`\u{1b}`).
pub fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            c if c.is_control() => escaped.extend(c.escape_default()),
            c => escaped.push(c),
        }
    }
    escaped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_and_controls_are_escaped() {
        assert_eq!(
            escape("<b a=\"x\">&'\u{1b}é"),
            "&lt;b a=&quot;x&quot;&gt;&amp;&#39;\\u{1b}é"
        );
    }
}
