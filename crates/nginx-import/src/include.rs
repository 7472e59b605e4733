//! `include` expansion. Reading files is the caller's: it passes an [`IncludeSource`]
//! that turns an include pattern into the files it names (the CLI's reads the disk and
//! expands globs). This module splices their directives in place, in the order given,
//! and bounds the work: include depth, total files, block nesting across files, and
//! cycles (a file that includes itself, directly or not) are errors, not hangs.

use crate::parse::{parse, Directive, ParseError, MAX_DEPTH};

/// Deepest chain of includes (nginx has no limit but recurses until it runs out of
/// file descriptors).
pub const MAX_INCLUDE_DEPTH: usize = 16;
/// Most files read for one configuration.
pub const MAX_FILES: usize = 1024;

/// One file an include pattern resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncludedFile {
    /// Name used in locations and for cycle detection: give the same name for the same
    /// file (the CLI gives the path as nginx would open it).
    pub name: String,
    pub text: String,
}

/// Where `include` finds files.
pub trait IncludeSource {
    /// The files `pattern` names, in the order nginx reads them (globs sorted). A
    /// pattern without glob characters names one file, which must exist; a glob may
    /// match nothing. `from` is the including file's name. `Err` is a message such as
    /// "cannot read conf.d/x.conf: No such file or directory".
    fn resolve(&mut self, pattern: &str, from: &str) -> Result<Vec<IncludedFile>, String>;
}

/// A source without files: every `include` is an error. For callers that parse a
/// single self-contained file.
pub struct NoIncludes;

impl IncludeSource for NoIncludes {
    fn resolve(&mut self, pattern: &str, _from: &str) -> Result<Vec<IncludedFile>, String> {
        Err(format!(
            "cannot include {pattern:?}: includes are not available here"
        ))
    }
}

/// Why a configuration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{file}:{line}: include: {message}")]
    Include {
        file: String,
        line: usize,
        message: String,
    },
}

/// Parses `text` (named `name`) and expands every `include`, at any depth.
pub fn load(
    name: &str,
    text: &str,
    source: &mut dyn IncludeSource,
) -> Result<Vec<Directive>, LoadError> {
    let directives = parse(name, text)?;
    let mut state = State {
        source,
        chain: vec![name.to_string()],
        files: 1,
    };
    state.expand(directives, 0)
}

struct State<'a> {
    source: &'a mut dyn IncludeSource,
    /// The files being expanded, outermost first (cycle detection).
    chain: Vec<String>,
    files: usize,
}

impl State<'_> {
    fn expand(&mut self, list: Vec<Directive>, depth: usize) -> Result<Vec<Directive>, LoadError> {
        let mut out = Vec::with_capacity(list.len());
        for mut directive in list {
            if directive.name == "include" && directive.block.is_none() {
                let fail = |message: String| LoadError::Include {
                    file: directive.file.to_string(),
                    line: directive.line,
                    message,
                };
                let [pattern] = directive.args.as_slice() else {
                    return Err(fail("expects exactly one file or pattern".to_string()));
                };
                if self.chain.len() > MAX_INCLUDE_DEPTH {
                    return Err(fail(format!(
                        "includes nested deeper than {MAX_INCLUDE_DEPTH} files"
                    )));
                }
                let files = self
                    .source
                    .resolve(pattern, &directive.file)
                    .map_err(fail)?;
                for file in files {
                    if self.chain.contains(&file.name) {
                        return Err(fail(format!(
                            "{} is already being included ({}): include cycle",
                            file.name,
                            self.chain.join(" -> ")
                        )));
                    }
                    self.files += 1;
                    if self.files > MAX_FILES {
                        return Err(fail(format!("more than {MAX_FILES} files included")));
                    }
                    let parsed = parse(&file.name, &file.text)?;
                    self.chain.push(file.name);
                    let expanded = self.expand(parsed, depth);
                    self.chain.pop();
                    out.extend(expanded?);
                }
                continue;
            }
            if let Some(block) = directive.block.take() {
                if depth + 1 > MAX_DEPTH {
                    return Err(LoadError::Parse(ParseError {
                        file: directive.file.to_string(),
                        line: directive.line,
                        column: directive.column,
                        message: format!(
                            "blocks nested deeper than {MAX_DEPTH} levels (across included files)"
                        ),
                    }));
                }
                directive.block = Some(self.expand(block, depth + 1)?);
            }
            out.push(directive);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Files in memory; `*` globs match by prefix and suffix, sorted, as the CLI's do.
    struct Memory(BTreeMap<&'static str, &'static str>);

    impl IncludeSource for Memory {
        fn resolve(&mut self, pattern: &str, _from: &str) -> Result<Vec<IncludedFile>, String> {
            let file = |(name, text): (&&str, &&str)| IncludedFile {
                name: name.to_string(),
                text: text.to_string(),
            };
            if let Some((head, tail)) = pattern.split_once('*') {
                return Ok(self
                    .0
                    .iter()
                    .filter(|(n, _)| n.starts_with(head) && n.ends_with(tail))
                    .map(file)
                    .collect());
            }
            self.0
                .get_key_value(pattern)
                .map(|f| vec![file(f)])
                .ok_or_else(|| format!("cannot read {pattern}: No such file or directory"))
        }
    }

    fn names(list: &[Directive]) -> Vec<String> {
        list.iter()
            .map(|d| format!("{}@{}:{}", d.name, d.file, d.line))
            .collect()
    }

    #[test]
    fn globs_expand_in_place_in_sorted_order_with_their_own_locations() {
        let mut fs = Memory(BTreeMap::from([
            ("conf.d/b.conf", "b;"),
            ("conf.d/a.conf", "\na1;\na2;"),
            ("conf.d/skip.txt", "nope;"),
            ("snippets/ssl.conf", "ssl_verify_client on;"),
        ]));
        let ast = load(
            "nginx.conf",
            "http {\n include conf.d/*.conf;\n server { include snippets/ssl.conf; }\n include empty/*.conf;\n}",
            &mut fs,
        )
        .unwrap();
        let http = ast[0].block.as_ref().unwrap();
        assert_eq!(
            names(http),
            [
                "a1@conf.d/a.conf:2",
                "a2@conf.d/a.conf:3",
                "b@conf.d/b.conf:1",
                "server@nginx.conf:3"
            ]
        );
        assert_eq!(
            names(http[3].block.as_ref().unwrap()),
            ["ssl_verify_client@snippets/ssl.conf:1"]
        );
    }

    #[test]
    fn missing_file_and_bad_syntax_are_located() {
        let mut fs = Memory(BTreeMap::from([("bad.conf", "a {")]));
        let err = load("main.conf", "\ninclude missing.conf;", &mut fs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "main.conf:2: include: cannot read missing.conf: No such file or directory"
        );
        let err = load("main.conf", "include bad.conf;", &mut fs).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("bad.conf:1:4: unexpected end of file"),
            "{err}"
        );
        let err = load("main.conf", "include a b;", &mut fs).unwrap_err();
        assert!(err.to_string().contains("exactly one"), "{err}");
    }

    #[test]
    fn cycles_are_errors() {
        let mut fs = Memory(BTreeMap::from([
            ("a.conf", "include b.conf;"),
            ("b.conf", "x;\ninclude a.conf;"),
            ("self.conf", "include self.conf;"),
        ]));
        let err = load("main.conf", "include a.conf;", &mut fs).unwrap_err();
        assert_eq!(
            err.to_string(),
            "b.conf:2: include: a.conf is already being included (main.conf -> a.conf -> b.conf): include cycle"
        );
        let err = load("self.conf", "include self.conf;", &mut fs).unwrap_err();
        assert!(err.to_string().contains("include cycle"), "{err}");
    }

    #[test]
    fn the_same_file_twice_is_not_a_cycle() {
        let mut fs = Memory(BTreeMap::from([("h.conf", "proxy_set_header A b;")]));
        let ast = load(
            "main.conf",
            "location / { include h.conf; }\nlocation /x { include h.conf; }",
            &mut fs,
        )
        .unwrap();
        assert_eq!(ast[1].block.as_ref().unwrap()[0].name, "proxy_set_header");
    }

    #[test]
    fn nesting_across_files_is_bounded() {
        // Each file nests ten blocks and includes the next inside them.
        struct Nested;
        impl IncludeSource for Nested {
            fn resolve(&mut self, p: &str, _: &str) -> Result<Vec<IncludedFile>, String> {
                let n: usize = p.parse().unwrap_or(0) + 1;
                Ok(vec![IncludedFile {
                    name: n.to_string(),
                    text: format!("{}include {n};{}", "a {".repeat(10), "}".repeat(10)),
                }])
            }
        }
        let err = load("0", "include 0;", &mut Nested).unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }
}
