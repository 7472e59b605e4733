//! Key path → (line, column) index of a YAML text.
//!
//! serde_yaml forgets positions once a value is deserialized, yet most configuration
//! errors are found afterwards (an unknown upstream, overlapping server names, a later
//! stage that cannot open a certificate). This module re-reads the text with yaml-rust2's
//! event parser, which reports a marker per event, and records where every key and every
//! list item starts, under the same key paths the errors use (`servers[0].tls.cert`).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Where each key path starts: a mapping entry at its key, a list item at its first character.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LocationIndex {
    positions: HashMap<String, (usize, usize)>,
    /// The first key written twice in one mapping, at its second occurrence:
    /// serde_yaml rejects such files but only points at the mapping.
    first_duplicate: Option<Duplicate>,
    /// Where the text goes on after the first YAML document: the start of a second
    /// document, else where yaml-rust2 stopped reading, else the first document's end.
    /// serde_yaml rejects multi-document files without saying where.
    after_first_document: Option<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    pub key_path: String,
    pub first: (usize, usize),
    pub again: (usize, usize),
}

impl LocationIndex {
    /// Indexes `source`. A text yaml-rust2 cannot fully parse keeps what was indexed
    /// before the problem: serde_yaml is the judge of syntax, this index only helps.
    pub(crate) fn build(source: &str) -> LocationIndex {
        let line_starts = std::iter::once(0)
            .chain(source.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        let mut builder = Builder {
            source,
            line_starts,
            ..Builder::default()
        };
        let mut parser = Parser::new_from_str(source);
        // Only the first document is indexed (serde_yaml rejects multi-document files);
        // reading on finds where a second one starts, for that error.
        let stopped = parser
            .load(&mut builder, true)
            .err()
            .map(|e| (e.marker().line(), e.marker().col() + 1));
        LocationIndex {
            positions: builder.positions,
            first_duplicate: builder.first_duplicate,
            after_first_document: builder
                .second_document
                .or(stopped)
                .or(builder.first_document_end),
        }
    }

    pub(crate) fn first_duplicate(&self) -> Option<&Duplicate> {
        self.first_duplicate.as_ref()
    }

    pub(crate) fn after_first_document(&self) -> Option<(usize, usize)> {
        self.after_first_document
    }

    /// The position of `key_path`, else of its nearest indexed parent, else 1:1.
    pub(crate) fn locate(&self, key_path: &str) -> (usize, usize) {
        let mut path = key_path;
        loop {
            if let Some(position) = self.positions.get(path) {
                return *position;
            }
            match parent(path) {
                Some(p) => path = p,
                None => return (1, 1),
            }
        }
    }
}

/// `a.b[2].c` → `a.b[2]` → `a.b` → `a` → `` → None.
pub(crate) fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    Some(match path.rfind(['.', '[']) {
        Some(i) => &path[..i],
        None => "",
    })
}

/// Joins a mapping key onto a path the way error paths are written.
pub(crate) fn join_key(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Joins a list index onto a path.
pub(crate) fn join_index(path: &str, index: usize) -> String {
    format!("{path}[{index}]")
}

#[derive(Debug)]
enum Frame {
    /// A mapping; `key` is set between a key and its value.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
    /// Inside a complex (non-scalar) mapping key, which no error path can name.
    ComplexKey {
        depth: usize,
    },
}

#[derive(Default)]
struct Builder<'a> {
    source: &'a str,
    stack: Vec<Frame>,
    /// Block collections whose start marker yaml-rust2 places after their first token:
    /// they take the position of the first located event inside them instead.
    pending: Vec<String>,
    positions: HashMap<String, (usize, usize)>,
    first_duplicate: Option<Duplicate>,
    /// Byte offset where each line starts.
    line_starts: Vec<usize>,
    /// Documents started so far; events of any but the first are not indexed.
    documents: usize,
    second_document: Option<(usize, usize)>,
    first_document_end: Option<(usize, usize)>,
}

impl Builder<'_> {
    /// The character at a 1-based line and 0-based character column (yaml-rust2's
    /// markers count characters, not bytes).
    fn char_at(&self, line: usize, column: usize) -> Option<char> {
        let start = *self.line_starts.get(line.checked_sub(1)?)?;
        self.source.get(start..)?.chars().nth(column)
    }

    fn record(&mut self, path: String, position: (usize, usize)) {
        for pending in self.pending.drain(..) {
            self.positions.entry(pending).or_insert(position);
        }
        self.positions.entry(path).or_insert(position);
    }

    fn scalar(&mut self, text: Option<String>, position: (usize, usize)) {
        match self.stack.last_mut() {
            // The document root is not indexed: unknown paths fall back to 1:1.
            None => {}
            Some(Frame::ComplexKey { .. }) => {}
            Some(Frame::Map { path, key }) => match key.take() {
                Some(_) => {
                    // A scalar value: its key's position already stands for it.
                }
                None => {
                    let key_text = text.unwrap_or_else(|| "*".to_string());
                    let full = join_key(path, &key_text);
                    *key = Some(key_text);
                    if let Some(first) = self.positions.get(&full) {
                        if self.first_duplicate.is_none() {
                            self.first_duplicate = Some(Duplicate {
                                key_path: full.clone(),
                                first: *first,
                                again: position,
                            });
                        }
                    }
                    self.record(full, position);
                }
            },
            Some(Frame::Seq { path, next }) => {
                let full = join_index(path, *next);
                *next += 1;
                self.record(full, position);
            }
        }
    }

    fn collection_start(&mut self, is_map: bool, marker: Marker, position: (usize, usize)) {
        let opener = if is_map { '{' } else { '[' };
        // Flow collections (`{ … }`, `[ … ]`) have exact markers; block ones do not.
        let is_flow = self.char_at(marker.line(), marker.col()) == Some(opener);
        let path = match self.stack.last_mut() {
            None => Some((String::new(), false)),
            Some(Frame::ComplexKey { depth }) => {
                *depth += 1;
                None
            }
            Some(Frame::Map { key: None, .. }) => {
                self.stack.push(Frame::ComplexKey { depth: 1 });
                None
            }
            Some(Frame::Map { path, key }) => {
                let full = join_key(path, key.as_deref().unwrap_or("?"));
                *key = None;
                // Located at its key already.
                Some((full, false))
            }
            Some(Frame::Seq { path, next }) => {
                let full = join_index(path, *next);
                *next += 1;
                Some((full, true))
            }
        };
        let Some((path, needs_position)) = path else {
            return;
        };
        if needs_position {
            if is_flow {
                self.record(path.clone(), position);
            } else {
                self.pending.push(path.clone());
            }
        }
        self.stack.push(if is_map {
            Frame::Map { path, key: None }
        } else {
            Frame::Seq { path, next: 0 }
        });
    }

    fn collection_end(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::ComplexKey { depth }) if *depth > 1 => *depth -= 1,
            Some(Frame::ComplexKey { .. }) => {
                self.stack.pop();
                if let Some(Frame::Map { key, .. }) = self.stack.last_mut() {
                    *key = Some("?".to_string());
                }
            }
            _ => {
                self.stack.pop();
            }
        }
    }
}

impl MarkedEventReceiver for Builder<'_> {
    fn on_event(&mut self, event: Event, marker: Marker) {
        // yaml-rust2 lines count from 1 and columns from 0; errors count both from 1.
        let position = (marker.line(), marker.col() + 1);
        match event {
            Event::DocumentStart => {
                self.documents += 1;
                if self.documents == 2 {
                    self.second_document = Some(position);
                }
            }
            Event::DocumentEnd if self.documents == 1 => {
                self.first_document_end.get_or_insert(position);
            }
            _ => {}
        }
        if self.documents > 1 {
            return;
        }
        match event {
            Event::Scalar(text, ..) => self.scalar(Some(text), position),
            Event::Alias(_) => self.scalar(None, position),
            Event::MappingStart(..) => self.collection_start(true, marker, position),
            Event::SequenceStart(..) => self.collection_start(false, marker, position),
            Event::MappingEnd | Event::SequenceEnd => self.collection_end(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "\
# comment
servers:
  - name: api
    listen: [\"0.0.0.0:8443\", \"[::]:8443\"]
    tls:
      cert: certs/server.crt
    routes:
      - match: { path_prefix: / }
        upstream: app
      -   upstream: other
  - name: ünïcode
    x: y
upstreams:
  app: { servers: [a] }
";

    #[test]
    fn locates_keys_items_and_flow_entries() {
        let index = LocationIndex::build(SOURCE);
        assert_eq!(index.locate("servers"), (2, 1));
        assert_eq!(index.locate("servers[0]"), (3, 5));
        assert_eq!(index.locate("servers[0].name"), (3, 5));
        assert_eq!(index.locate("servers[0].listen"), (4, 5));
        assert_eq!(index.locate("servers[0].listen[1]"), (4, 30));
        assert_eq!(index.locate("servers[0].tls.cert"), (6, 7));
        assert_eq!(index.locate("servers[0].routes[0]"), (8, 9));
        assert_eq!(
            index.locate("servers[0].routes[0].match.path_prefix"),
            (8, 18)
        );
        assert_eq!(index.locate("servers[0].routes[1]"), (10, 11));
        assert_eq!(index.locate("servers[1].x"), (12, 5));
        assert_eq!(index.locate("upstreams.app.servers[0]"), (14, 20));
    }

    #[test]
    fn falls_back_to_nearest_parent_then_start() {
        let index = LocationIndex::build(SOURCE);
        assert_eq!(index.locate("servers[0].tls.key"), (5, 5));
        assert_eq!(index.locate("servers[0].client_auth.verify"), (3, 5));
        assert_eq!(index.locate("admin.listen"), (1, 1));
    }

    #[test]
    fn broken_text_keeps_what_was_indexed() {
        let index = LocationIndex::build("a:\n  b: 1\n  c: [\n");
        assert_eq!(index.locate("a.b"), (2, 3));
    }

    #[test]
    fn complex_keys_do_not_derail_the_index() {
        let index = LocationIndex::build("? [a, b]\n: 1\nz: 2\n");
        assert_eq!(index.locate("z"), (3, 1));
    }

    #[test]
    fn columns_count_characters_after_non_ascii_text() {
        let index = LocationIndex::build("k: \"ü\"\nl: [ä, {x: 1}]\n");
        assert_eq!(index.locate("l[0]"), (2, 5));
        assert_eq!(index.locate("l[1]"), (2, 8));
        assert_eq!(index.locate("l[1].x"), (2, 9));
    }

    #[test]
    fn remembers_the_first_duplicate_key() {
        let index = LocationIndex::build("a:\n  b: 1\n  c: 2\n  b: 3\nd: 4\nd: 5\n");
        assert_eq!(
            index.first_duplicate(),
            Some(&Duplicate {
                key_path: "a.b".into(),
                first: (2, 3),
                again: (4, 3)
            })
        );
    }

    #[test]
    fn parents() {
        assert_eq!(parent("a.b[2].c"), Some("a.b[2]"));
        assert_eq!(parent("a.b[2]"), Some("a.b"));
        assert_eq!(parent("a"), Some(""));
        assert_eq!(parent(""), None);
    }
}
