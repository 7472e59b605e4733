//! `certgate import-nginx`: reads an nginx configuration and writes the equivalent
//! gateway.yaml for its mTLS `server` blocks, listing (file, line, why) everything it
//! could not carry over.
//!
//! Three steps, all without I/O of their own: [`parse`] (nginx's grammar, one file),
//! [`load`] (expands `include` through an [`IncludeSource`] the caller provides) and
//! [`convert`] (the mapping; paths are computed from [`Options`], never opened). The
//! `certgate` binary does the reading and writing.
#![forbid(unsafe_code)]

mod access;
mod convert;
mod include;
mod parse;
mod yaml;

pub use convert::{convert, Conversion, NothingToConvert, Options, Unsupported, ACCESS_DENIED};
pub use include::{
    load, IncludeSource, IncludedFile, LoadError, NoIncludes, MAX_FILES, MAX_INCLUDE_DEPTH,
};
pub use parse::{parse, Directive, ParseError, MAX_DEPTH};

#[cfg(test)]
mod tests;
