//! A small YAML writer for the converted configuration: block mappings and lists with
//! a `# comment` beside each key, scalars quoted only where YAML would read them as
//! something else (`on`, `1.2`, `*.example.org`, `127.0.0.1:443`).

/// Builds the document line by line.
#[derive(Default)]
pub(crate) struct Writer {
    out: String,
}

impl Writer {
    fn push_line(&mut self, indent: usize, text: &str, note: &str) {
        self.out.push_str(&" ".repeat(indent));
        self.out.push_str(text);
        if !note.is_empty() {
            self.out.push_str("  # ");
            self.out.push_str(&comment(note));
        }
        self.out.push('\n');
    }

    pub(crate) fn comment(&mut self, indent: usize, text: &str) {
        self.out.push_str(&" ".repeat(indent));
        self.out.push_str("# ");
        self.out.push_str(&comment(text));
        self.out.push('\n');
    }

    pub(crate) fn blank(&mut self) {
        self.out.push('\n');
    }

    /// `key: value  # note` (an empty value opens a nested mapping).
    pub(crate) fn key(&mut self, indent: usize, key: &str, value: &str, note: &str) {
        let text = if value.is_empty() {
            format!("{key}:")
        } else {
            format!("{key}: {value}")
        };
        self.push_line(indent, &text, note);
    }

    /// `- key: value`: the first key of a list item; the item's other keys go at
    /// `indent + 2`.
    pub(crate) fn item_key(&mut self, indent: usize, key: &str, value: &str, note: &str) {
        let text = if value.is_empty() {
            format!("- {key}:")
        } else {
            format!("- {key}: {value}")
        };
        self.push_line(indent, &text, note);
    }

    /// A list of scalars, one per line with its own comment.
    pub(crate) fn list<T: AsRef<str>>(
        &mut self,
        indent: usize,
        key: &str,
        items: &[crate::convert::FromValue<T>],
    ) {
        self.key(indent, key, "", "");
        for item in items {
            self.push_line(
                indent + 2,
                &format!("- {}", scalar(item.value().as_ref())),
                &item.comment(),
            );
        }
    }

    pub(crate) fn finish(self) -> String {
        self.out
    }
}

/// A comment's text on one line.
pub(crate) fn comment(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `text` as a YAML scalar that reads back as this exact string.
pub(crate) fn scalar(text: &str) -> String {
    const RESERVED: &[&str] = &[
        "true", "false", "yes", "no", "on", "off", "y", "n", "null", "~",
    ];
    let plain = !text.is_empty()
        && (text
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'/' || b == b'_')
            || text.starts_with("./")
            || text.starts_with("../"))
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-".contains(&b))
        && !RESERVED.contains(&text.to_ascii_lowercase().as_str())
        && text.parse::<f64>().is_err()
        && !text
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'_');
    if plain {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::scalar;

    #[test]
    fn scalars_quote_what_yaml_would_misread() {
        assert_eq!(scalar("certs/server.crt"), "certs/server.crt");
        assert_eq!(scalar("TLSv1.2"), "TLSv1.2");
        assert_eq!(scalar("10m"), "10m");
        assert_eq!(scalar("../ssl/ca.crt"), "../ssl/ca.crt");
        for quoted in [
            "on",
            "Off",
            "1.2",
            "443",
            "",
            "*.example.org",
            "127.0.0.1:443",
            "$ssl_client_s_dn",
            "-x",
            ".5",
            "a b",
            "x: y",
            "#c",
        ] {
            assert!(scalar(quoted).starts_with('"'), "{quoted}");
        }
        assert_eq!(scalar("a\"b\\c\td"), r#""a\"b\\c\td""#);
    }
}
