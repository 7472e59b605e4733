//! Located configuration errors: where in which file ([`Location`]), under which key
//! ([`ConfigError::key_path`]) and what is wrong, plus the list type every stage returns
//! so that one run of `certgate check` reports every problem it can find.

use std::fmt;
use std::path::PathBuf;

/// A position in a configuration file. Lines and columns count from 1; line 0 means
/// "the file as a whole" (e.g. it could not be read) and prints as just the file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// One problem in a configuration file.
///
/// Displays as `gateway.yaml:12:7: servers[0].client_auth.verify: expected one of on,
/// optional, optional_no_ca, off; found "yes"`; errors that belong to no key (YAML syntax
/// errors, an unreadable file) leave `key_path` empty and print without it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {}{message}", key_prefix(.key_path))]
pub struct ConfigError {
    pub location: Location,
    /// Path of the offending key, as `servers[0].routes[1].upstream`; empty for file-level errors.
    pub key_path: String,
    pub message: String,
}

fn key_prefix(key_path: &str) -> String {
    if key_path.is_empty() {
        String::new()
    } else {
        format!("{key_path}: ")
    }
}

/// Every problem found in one pass, in file order. Displays one error per line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", join_lines(.0))]
pub struct ConfigErrors(pub Vec<ConfigError>);

fn join_lines(errors: &[ConfigError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigErrors {
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(line: usize, column: usize, key_path: &str, message: &str) -> ConfigError {
        ConfigError {
            location: Location {
                file: PathBuf::from("gateway.yaml"),
                line,
                column,
            },
            key_path: key_path.into(),
            message: message.into(),
        }
    }

    #[test]
    fn displays_location_key_and_message() {
        let e = error(
            12,
            7,
            "servers[0].client_auth.verify",
            "expected one of on, optional, optional_no_ca, off; found \"yes\"",
        );
        assert_eq!(
            e.to_string(),
            "gateway.yaml:12:7: servers[0].client_auth.verify: expected one of on, optional, optional_no_ca, off; found \"yes\""
        );
    }

    #[test]
    fn file_level_errors_omit_position_and_key() {
        assert_eq!(
            error(0, 0, "", "cannot read: gone").to_string(),
            "gateway.yaml: cannot read: gone"
        );
        assert_eq!(
            error(3, 1, "", "bad syntax").to_string(),
            "gateway.yaml:3:1: bad syntax"
        );
    }

    #[test]
    fn list_displays_one_error_per_line() {
        let errors = ConfigErrors(vec![error(1, 1, "a", "x"), error(2, 3, "b", "y")]);
        assert_eq!(
            errors.to_string(),
            "gateway.yaml:1:1: a: x\ngateway.yaml:2:3: b: y"
        );
        assert_eq!(errors.len(), 2);
    }
}
