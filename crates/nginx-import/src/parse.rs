//! nginx's configuration grammar: directives (`name arg …;`), blocks (`name arg … { … }`),
//! `#` comments, single and double quotes with nginx's escapes, `${var}` inside words. The
//! tokenizer follows `ngx_conf_read_token` (nginx 1.22) so that a file nginx accepts
//! parses to the same words here, and one it refuses is an error naming file, line and
//! column. Never panics; nesting is bounded by [`MAX_DEPTH`].

use std::sync::Arc;

/// Deepest block nesting accepted (nginx has no limit; real configs stay below 6).
pub const MAX_DEPTH: usize = 64;

/// One directive with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    pub name: String,
    /// Arguments after the name, unquoted and unescaped as nginx does.
    pub args: Vec<String>,
    pub file: Arc<str>,
    /// 1-based line and column of the directive's name.
    pub line: usize,
    pub column: usize,
    /// `Some` for a block directive (`server { … }`), even an empty one.
    pub block: Option<Vec<Directive>>,
}

impl Directive {
    /// `file:line`, as nginx prints locations.
    pub fn at(&self) -> String {
        format!("{}:{}", self.file, self.line)
    }
}

/// A file nginx itself would refuse to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Debug)]
enum Token {
    Word(String, usize, usize),
    Semicolon(usize, usize),
    Open(usize, usize),
    Close(usize, usize),
    End(usize, usize),
}

struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    line: usize,
    column: usize,
    file: &'a str,
}

impl<'a> Lexer<'a> {
    fn new(file: &'a str, text: &'a str) -> Self {
        Lexer {
            chars: text.chars().peekable(),
            line: 1,
            column: 1,
            file,
        }
    }

    fn error(&self, line: usize, column: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            file: self.file.to_string(),
            line,
            column,
            message: message.into(),
        }
    }

    fn bump(&mut self) -> Option<char> {
        let ch = self.chars.next()?;
        if ch == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
        Some(ch)
    }

    fn next_token(&mut self) -> Result<Token, ParseError> {
        loop {
            let (line, column) = (self.line, self.column);
            let Some(&ch) = self.chars.peek() else {
                return Ok(Token::End(line, column));
            };
            match ch {
                ' ' | '\t' | '\r' | '\n' => {
                    self.bump();
                }
                '#' => {
                    while let Some(ch) = self.bump() {
                        if ch == '\n' {
                            break;
                        }
                    }
                }
                ';' => {
                    self.bump();
                    return Ok(Token::Semicolon(line, column));
                }
                '{' => {
                    self.bump();
                    return Ok(Token::Open(line, column));
                }
                '}' => {
                    self.bump();
                    return Ok(Token::Close(line, column));
                }
                '"' | '\'' => {
                    self.bump();
                    let raw = self.quoted(ch, line, column)?;
                    // nginx wants a separator right after a closing quote.
                    match self.chars.peek() {
                        None | Some(' ' | '\t' | '\r' | '\n' | ';' | '{' | ')') => {}
                        Some(&other) => {
                            return Err(self.error(
                                self.line,
                                self.column,
                                format!("unexpected \"{other}\" after a quoted string"),
                            ))
                        }
                    }
                    return Ok(Token::Word(unescape(&raw), line, column));
                }
                _ => {
                    let raw = self.word();
                    return Ok(Token::Word(unescape(&raw), line, column));
                }
            }
        }
    }

    /// The raw text up to the closing `quote` (escapes kept for [`unescape`]).
    fn quoted(&mut self, quote: char, line: usize, column: usize) -> Result<String, ParseError> {
        let mut raw = String::new();
        loop {
            match self.bump() {
                None => {
                    return Err(self.error(line, column, "unterminated quoted string"));
                }
                Some('\\') => {
                    raw.push('\\');
                    if let Some(next) = self.bump() {
                        raw.push(next);
                    }
                }
                Some(ch) if ch == quote => return Ok(raw),
                Some(ch) => raw.push(ch),
            }
        }
    }

    /// An unquoted word: ends at whitespace, `;` or `{` (but `${` stays in the word, as in
    /// `${var}`); a backslash protects the next character.
    fn word(&mut self) -> String {
        let mut raw = String::new();
        let mut after_dollar = false;
        while let Some(&ch) = self.chars.peek() {
            match ch {
                ' ' | '\t' | '\r' | '\n' | ';' => break,
                '{' if !after_dollar => break,
                '\\' => {
                    self.bump();
                    raw.push('\\');
                    if let Some(next) = self.bump() {
                        raw.push(next);
                    }
                    after_dollar = false;
                    continue;
                }
                _ => {}
            }
            self.bump();
            raw.push(ch);
            after_dollar = ch == '$';
        }
        raw
    }
}

/// nginx's escapes: `\"`, `\'`, `\\` stand for the character, `\t`, `\r`, `\n` for
/// the control character; any other backslash is kept as written.
fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(ch) = chars.next() {
        if ch != '\\' {
            out.push(ch);
            continue;
        }
        match chars.peek() {
            Some(&c @ ('"' | '\'' | '\\')) => {
                out.push(c);
                chars.next();
            }
            Some('t') => {
                out.push('\t');
                chars.next();
            }
            Some('r') => {
                out.push('\r');
                chars.next();
            }
            Some('n') => {
                out.push('\n');
                chars.next();
            }
            _ => out.push('\\'),
        }
    }
    out
}

/// Parses one file's text. `name` is used in every location (`nginx.conf:12`).
/// `include` directives are kept as they are; see [`crate::load`] to expand them.
pub fn parse(name: &str, text: &str) -> Result<Vec<Directive>, ParseError> {
    let file: Arc<str> = Arc::from(name);
    let mut lexer = Lexer::new(name, text);
    // Open blocks: the header directive and the directives read so far inside it.
    let mut stack: Vec<(Directive, Vec<Directive>)> = Vec::new();
    let mut current: Vec<Directive> = Vec::new();
    let mut words: Vec<(String, usize, usize)> = Vec::new();
    loop {
        match lexer.next_token()? {
            Token::Word(word, line, column) => words.push((word, line, column)),
            Token::Semicolon(line, column) => {
                let Some(directive) = directive(&file, &mut words, None) else {
                    return Err(lexer.error(line, column, "unexpected \";\""));
                };
                current.push(directive);
            }
            Token::Open(line, column) => {
                let Some(header) = directive(&file, &mut words, Some(Vec::new())) else {
                    return Err(lexer.error(line, column, "unexpected \"{\""));
                };
                if stack.len() >= MAX_DEPTH {
                    return Err(lexer.error(
                        line,
                        column,
                        format!("blocks nested deeper than {MAX_DEPTH} levels"),
                    ));
                }
                stack.push((header, std::mem::take(&mut current)));
            }
            Token::Close(line, column) => {
                if !words.is_empty() {
                    return Err(lexer.error(line, column, "unexpected \"}\""));
                }
                let Some((mut header, parent)) = stack.pop() else {
                    return Err(lexer.error(line, column, "unexpected \"}\""));
                };
                header.block = Some(std::mem::replace(&mut current, parent));
                current.push(header);
            }
            Token::End(line, column) => {
                if let Some((header, _)) = stack.last() {
                    return Err(lexer.error(
                        line,
                        column,
                        format!(
                            "unexpected end of file, expecting \"}}\" (the block \"{}\" opened on line {} is not closed)",
                            header.name, header.line
                        ),
                    ));
                }
                if let Some((word, l, c)) = words.first() {
                    return Err(lexer.error(
                        *l,
                        *c,
                        format!(
                            "unexpected end of file, expecting \";\" or \"}}\" after \"{word}\""
                        ),
                    ));
                }
                return Ok(current);
            }
        }
    }
}

fn directive(
    file: &Arc<str>,
    words: &mut Vec<(String, usize, usize)>,
    block: Option<Vec<Directive>>,
) -> Option<Directive> {
    let mut drained = std::mem::take(words).into_iter();
    let (name, line, column) = drained.next()?;
    Some(Directive {
        name,
        args: drained.map(|(word, _, _)| word).collect(),
        file: Arc::clone(file),
        line,
        column,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(d: &Directive) -> Vec<&str> {
        std::iter::once(d.name.as_str())
            .chain(d.args.iter().map(String::as_str))
            .collect()
    }

    #[test]
    fn directives_blocks_and_lines() {
        let text = "worker_processes 1;\nhttp {\n  server {\n    listen 443 ssl;\n  }\n}\n";
        let ast = parse("nginx.conf", text).unwrap();
        assert_eq!(ast.len(), 2);
        assert_eq!(words(&ast[0]), ["worker_processes", "1"]);
        assert_eq!(ast[0].block, None);
        let http = &ast[1];
        assert_eq!((http.name.as_str(), http.line), ("http", 2));
        let server = &http.block.as_ref().unwrap()[0];
        assert_eq!((server.line, server.column), (3, 3));
        let listen = &server.block.as_ref().unwrap()[0];
        assert_eq!(words(listen), ["listen", "443", "ssl"]);
        assert_eq!(listen.at(), "nginx.conf:4");
    }

    #[test]
    fn quoting_and_escapes_as_nginx() {
        let ast = parse(
            "t",
            r#"a "x y" 'it''s'; b "q\"uote" 'back\\slash' "tab\there" plain\;semi "\d";"#,
        );
        // nginx wants a space after a closing quote: 'it''s' is an error.
        assert!(ast.is_err());
        let ast = parse(
            "t",
            r#"a "x y" 'single "in" it'; b "q\"uote" 'back\\slash' "tab\there" plain\;semi "\d";"#,
        )
        .unwrap();
        assert_eq!(words(&ast[0]), ["a", "x y", "single \"in\" it"]);
        assert_eq!(
            words(&ast[1]),
            [
                "b",
                "q\"uote",
                "back\\slash",
                "tab\there",
                "plain\\;semi",
                "\\d"
            ]
        );
    }

    #[test]
    fn comments_only_at_token_start() {
        let ast = parse("t", "# whole line\na b#c; # trailing ; { }\nd \"#not\";\n").unwrap();
        assert_eq!(words(&ast[0]), ["a", "b#c"]);
        assert_eq!(words(&ast[1]), ["d", "#not"]);
        assert_eq!(ast[1].line, 3);
    }

    #[test]
    fn variables_with_braces_stay_in_the_word() {
        let ast = parse(
            "t",
            "proxy_set_header X-A ${ssl_client_s_dn}x;\nserver{listen 1;}",
        )
        .unwrap();
        assert_eq!(
            words(&ast[0]),
            ["proxy_set_header", "X-A", "${ssl_client_s_dn}x"]
        );
        assert_eq!(ast[1].name, "server");
        assert_eq!(ast[1].block.as_ref().unwrap().len(), 1);
    }

    #[test]
    fn quoted_strings_span_lines() {
        let ast = parse("t", "a \"one\ntwo\";\nb;").unwrap();
        assert_eq!(ast[0].args, ["one\ntwo"]);
        assert_eq!(ast[1].line, 3);
    }

    #[test]
    fn nested_and_empty_blocks() {
        let ast = parse("t", "a { b { c { } } d; }").unwrap();
        let b = &ast[0].block.as_ref().unwrap()[0];
        let c = &b.block.as_ref().unwrap()[0];
        assert_eq!(c.block.as_deref(), Some(&[][..]));
        assert_eq!(ast[0].block.as_ref().unwrap()[1].name, "d");
    }

    #[test]
    fn errors_name_file_line_and_column() {
        let cases = [
            ("http {\n  server {\n", "t:3:1: unexpected end of file, expecting \"}\" (the block \"server\" opened on line 2 is not closed)"),
            ("a b", "t:1:1: unexpected end of file, expecting \";\" or \"}\" after \"a\""),
            ("a;\n}", "t:2:1: unexpected \"}\""),
            ("a { b }", "t:1:7: unexpected \"}\""),
            ("\n  ;", "t:2:3: unexpected \";\""),
            ("{", "t:1:1: unexpected \"{\""),
            ("a \"open\n\n", "t:1:3: unterminated quoted string"),
            ("a 'open", "t:1:3: unterminated quoted string"),
            ("a \"x\"y;", "t:1:6: unexpected \"y\" after a quoted string"),
        ];
        for (text, expected) in cases {
            let err = parse("t", text).unwrap_err();
            assert_eq!(err.to_string(), expected, "for {text:?}");
        }
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = "a {".repeat(MAX_DEPTH) + &"}".repeat(MAX_DEPTH);
        assert!(parse("t", &ok).is_ok());
        let deep = "a {".repeat(100_000);
        let err = parse("t", &deep).unwrap_err();
        assert!(err.message.contains("nested deeper"), "{err}");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for text in [
            "", "\\", "a \\", "'", "\"\\", "${", "a ${;", "}}}", "a {{", "\u{0}", "é ü;",
            "a\r\nb;", "#", "a '\\", "$", "a $", "a 'x';;",
        ] {
            let _ = parse("t", text);
        }
    }
}
