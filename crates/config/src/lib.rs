//! `certgate-config`: reads `gateway.yaml` into a typed, validated [`Config`].
//!
//! This crate owns the file format and every check that needs only the text: syntax,
//! unknown keys, types, choices, defaults, cross-references (routes → upstreams) and
//! listener overlaps. It opens no file but the config itself ([`Config::load`]);
//! certificates, keys, CAs and CRLs are opened by later stages, which report their
//! problems at the right line through [`Config::error_at`].
//!
//! Pipeline: YAML text → `serde_yaml::Value` (syntax errors, with line and column) →
//! `raw` serde structs mirroring the file (`deny_unknown_fields`) → `compile` → model.
//! A key-path index built from the same text ([`Config::locate`]) gives every error,
//! including those found after deserialization, its line and column.

#![forbid(unsafe_code)]

mod compile;
mod error;
mod location;
mod model;
mod raw;
#[cfg(test)]
mod tests;
mod units;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use error::{ConfigError, ConfigErrors, Location};
pub use model::*;

use location::LocationIndex;

/// A validated `gateway.yaml`.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` = no admin listener.
    pub admin: Option<AdminConfig>,
    pub log: LogConfig,
    /// At least one.
    pub servers: Vec<ServerConfig>,
    /// By name; at least one.
    pub upstreams: BTreeMap<String, UpstreamConfig>,
    /// `shutdown_grace`: on SIGTERM, how long requests in flight may take to finish after
    /// the listeners stop accepting; default 10s.
    pub shutdown_grace: std::time::Duration,
    /// `keepalive_timeout`: how long a client connection may stay idle (after its handshake,
    /// between HTTP/1.x requests, HTTP/2 with no stream open) before it is closed; default 60s.
    pub keepalive_timeout: std::time::Duration,
    /// `watch`: reload by itself when this file or any file it names changes on disk
    /// (as SIGHUP would); default false. `certgate run --watch` turns it on too. Fixed at
    /// start: a reload that changes it logs that the new value needs a restart.
    pub watch: bool,
    /// `pid_file`: where `certgate run` writes its process id (and, next to it, the outcome
    /// of each reload) for `certgate reload` and `kill`; resolved against the config
    /// file's directory. Default none: no file is shared between instances by default,
    /// and systemd and Kubernetes find the process without one. `--pid-file` overrides it.
    pub pid_file: Option<PathBuf>,
    /// `client_header_timeout`, `large_client_header_buffers`, `max_connections`, … (top-level).
    pub client_limits: ClientLimits,
    /// `paths:` how request paths are normalized before routing: `encoded_slashes: reject`
    /// (default) or `keep` (docs/security.md, "Paths").
    pub paths: certgate_path::Options,
    /// The file this came from, as given to [`Config::parse`] / [`Config::load`].
    pub file: PathBuf,
    index: LocationIndex,
    warnings: Vec<ConfigError>,
}

impl Config {
    /// Parses and validates `source`. Pure: `file` only names the file in messages and
    /// is the base for relative paths (`certs/server.crt` next to the config file).
    ///
    /// On failure, returns every error found, in file order.
    pub fn parse(source: &str, file: &Path) -> Result<Config, ConfigErrors> {
        let index = LocationIndex::build(source);
        let mut root: serde_yaml::Value =
            serde_yaml::from_str(source).map_err(|e| syntax_error(&e, file, &index))?;
        // `<<: *defaults` merge keys, for configs that share blocks between servers.
        root.apply_merge()
            .map_err(|e| syntax_error(&e, file, &index))?;
        let (output, errors) = compile::compile(&root, file, &index);
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            admin: output.admin,
            log: output.log,
            servers: output.servers,
            upstreams: output.upstreams,
            shutdown_grace: output.shutdown_grace,
            keepalive_timeout: output.keepalive_timeout,
            watch: output.watch,
            pid_file: output.pid_file,
            client_limits: output.client_limits,
            paths: output.paths,
            file: file.to_path_buf(),
            index,
            warnings: output.warnings,
        })
    }

    /// Reads `file` and [parses](Config::parse) it. An unreadable file is an error naming it.
    pub fn load(file: &Path) -> Result<Config, ConfigErrors> {
        let source = std::fs::read_to_string(file).map_err(|e| ConfigError {
            location: Location {
                file: file.to_path_buf(),
                line: 0,
                column: 0,
            },
            key_path: String::new(),
            message: format!("cannot read the configuration file: {e}"),
        })?;
        Config::parse(&source, file)
    }

    /// Where `key_path` (`servers[0].tls.cert`) is written; for a key left at its
    /// default, the nearest parent that is written; else the start of the file.
    pub fn locate(&self, key_path: &str) -> Location {
        let (line, column) = self.index.locate(key_path);
        Location {
            file: self.file.clone(),
            line,
            column,
        }
    }

    /// A located error for later stages, e.g.
    /// `config.error_at("servers[0].tls.cert", "cannot open certs/x.crt: No such file")`.
    pub fn error_at(&self, key_path: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            location: self.locate(key_path),
            key_path: key_path.to_string(),
            message: message.into(),
        }
    }

    /// Things that are valid but probably not meant: an upstream no route uses, CAs
    /// configured under `verify: off`, `trusted_ca` under upstream `verify: false`.
    pub fn warnings(&self) -> Vec<ConfigError> {
        self.warnings.clone()
    }
}

/// A serde_yaml error raised while reading the text (syntax, duplicate keys, anchors).
fn syntax_error(error: &serde_yaml::Error, file: &Path, index: &LocationIndex) -> ConfigError {
    let mut message = error.to_string();
    if message.starts_with("duplicate entry with key") {
        // serde_yaml points at the enclosing mapping; name the key and both places.
        if let Some(duplicate) = index.first_duplicate() {
            let (line, column) = duplicate.again;
            return ConfigError {
                location: Location {
                    file: file.to_path_buf(),
                    line,
                    column,
                },
                key_path: duplicate.key_path.clone(),
                message: format!("duplicate key (first at line {})", duplicate.first.0),
            };
        }
    }
    let (line, column) = match error.location() {
        Some(location) => {
            // The position goes in front, like every other error; drop serde_yaml's copy.
            let suffix = format!(" at line {} column {}", location.line(), location.column());
            if let Some(at) = message.find(&suffix) {
                message.replace_range(at..at + suffix.len(), "");
            }
            (location.line(), location.column())
        }
        // serde_yaml has no position for "more than one document"; the index knows
        // where the text goes on after the first one.
        None => index.after_first_document().unwrap_or((0, 0)),
    };
    ConfigError {
        location: Location {
            file: file.to_path_buf(),
            line,
            column,
        },
        key_path: String::new(),
        message: format!("invalid YAML: {message}"),
    }
}
