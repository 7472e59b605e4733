//! `certgate import-nginx FILE [-o OUT]`: the file-system side of the nginx importer
//! (reading the file and its includes, writing the result); the grammar and the mapping
//! are `certgate-nginx-import`'s.
//!
//! Exit codes: 0 the output is complete; 2 it was written but something was not carried
//! over (each item is printed on stderr as `file:line: directive: why`), among which
//! access checks that could not be carried over exactly: the routes they cover refuse
//! every request (`deny_all: true`); 1 nothing was written (unreadable file, syntax
//! error, or no TLS server to convert).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use certgate_nginx_import::{IncludeSource, IncludedFile, Options};

#[derive(clap::Args)]
pub(crate) struct ImportArgs {
    /// The nginx configuration: a whole nginx.conf or a file with `server` blocks (sites-enabled/).
    file: PathBuf,
    /// Write gateway.yaml here (default: standard output). Relative paths in it are
    /// written relative to this file's directory (the current directory for stdout).
    #[arg(short = 'o', long = "output")]
    output: Option<PathBuf>,
    /// The directory nginx resolves relative `include` and `ssl_*` paths against: its
    /// configuration prefix, the directory of the file given to `nginx -c` (default: the
    /// directory of FILE). Give /etc/nginx when FILE is a sites-enabled/ or conf.d/ file.
    #[arg(long, value_name = "DIR")]
    conf_dir: Option<PathBuf>,
    /// Replace an existing -o file.
    #[arg(long, requires = "output")]
    force: bool,
}

/// Exit code when the output was written but is incomplete.
const INCOMPLETE: u8 = 2;

pub(crate) fn main(args: ImportArgs) -> ExitCode {
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("certgate: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &ImportArgs) -> anyhow::Result<ExitCode> {
    let source = args.file.to_string_lossy().into_owned();
    // Like `certs init` and `certs p12`: an existing file is replaced only on request.
    if let Some(out) = &args.output {
        if !args.force && out.symlink_metadata().is_ok() && !same_file(out, &args.file) {
            anyhow::bail!(
                "{} already exists; nothing written (use --force to replace it)",
                out.display()
            );
        }
    }
    let bytes = std::fs::read(&args.file).with_context(|| format!("cannot read {source}"))?;
    let text = String::from_utf8_lossy(&bytes);
    // nginx resolves `include` and `ssl_*` paths against its configuration prefix: the
    // directory of the file given with `-c`.
    let conf_dir = match &args.conf_dir {
        Some(dir) => dir.clone(),
        None => args.file.parent().unwrap_or(Path::new("")).to_path_buf(),
    };
    let mut includes = FsIncludes {
        conf_dir: conf_dir.clone(),
    };
    let directives = certgate_nginx_import::load(&source, &text, &mut includes)?;

    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let out_dir = match &args.output {
        Some(out) => cwd.join(out.parent().unwrap_or(Path::new(""))),
        None => cwd.clone(),
    };
    let options = Options {
        source: source.clone(),
        conf_dir: cwd.join(&conf_dir),
        out_dir,
    };
    let conversion = match certgate_nginx_import::convert(&directives, &options) {
        Ok(c) => c,
        Err(nothing) => {
            for u in &nothing.unsupported {
                eprintln!("{u}");
            }
            anyhow::bail!("{nothing}; nothing written");
        }
    };

    match &args.output {
        Some(out) => {
            if same_file(out, &args.file) {
                anyhow::bail!(
                    "{} is the nginx file itself; nothing written",
                    out.display()
                );
            }
            // All or nothing: a temporary file renamed into place.
            certgate_pki::issue::write_file_set(
                &[certgate_pki::issue::OutputFile::public(
                    out,
                    conversion.yaml.clone().into_bytes(),
                )],
                args.force,
            )?;
        }
        None => print!("{}", conversion.yaml),
    }
    let written = args
        .output
        .as_ref()
        .map(|o| o.display().to_string())
        .unwrap_or_else(|| "standard output".to_string());
    if conversion.is_complete() {
        eprintln!("certgate: {source} converted to {written}; every directive was carried over");
        return Ok(ExitCode::SUCCESS);
    }
    for u in &conversion.unsupported {
        eprintln!("{u}");
    }
    if !conversion.access_denied.is_empty() {
        eprintln!(
            "certgate: {} access check(s) above could not be carried over exactly: the routes they cover refuse every request (deny_all: true) until you convert them by hand",
            conversion.access_denied.len()
        );
    }
    eprintln!(
        "certgate: {source} converted to {written}, INCOMPLETE: {} directive(s) above were not carried over (exit {INCOMPLETE})",
        conversion.unsupported.len()
    );
    Ok(ExitCode::from(INCOMPLETE))
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// `include` from the disk: relative patterns are taken from nginx's configuration
/// directory (the main file's directory), as nginx does, not from the including file's;
/// globs (`*`, `?`, `[…]`) are expanded per path component, sorted, hidden files only
/// when the pattern's component starts with a dot (glob(3)); a glob may match nothing,
/// a plain name must exist.
struct FsIncludes {
    conf_dir: PathBuf,
}

impl IncludeSource for FsIncludes {
    fn resolve(&mut self, pattern: &str, _from: &str) -> Result<Vec<IncludedFile>, String> {
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            self.conf_dir.join(pattern)
        };
        let read = |path: &Path| {
            std::fs::read(path)
                .map(|bytes| IncludedFile {
                    name: path.to_string_lossy().into_owned(),
                    text: String::from_utf8_lossy(&bytes).into_owned(),
                })
                .map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        if !pattern.contains(['*', '?', '[']) {
            return read(&full).map(|f| vec![f]);
        }
        let mut paths = glob(&full);
        paths.sort();
        paths
            .iter()
            .filter(|p| p.is_file())
            .map(|p| read(p))
            .collect()
    }
}

/// Paths matching `pattern`, one component at a time.
fn glob(pattern: &Path) -> Vec<PathBuf> {
    let mut current = vec![PathBuf::new()];
    for component in pattern.components() {
        let part = component.as_os_str().to_string_lossy();
        if !part.contains(['*', '?', '[']) {
            for p in &mut current {
                p.push(component.as_os_str());
            }
            continue;
        }
        let mut next = Vec::new();
        for dir in &current {
            let listing = if dir.as_os_str().is_empty() {
                std::fs::read_dir(".")
            } else {
                std::fs::read_dir(dir)
            };
            let Ok(entries) = listing else { continue };
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if wildcard(part.as_bytes(), name.as_bytes()) {
                    next.push(dir.join(&name));
                }
            }
        }
        current = next;
    }
    current
}

/// glob(3)-style matching of one path component: `*`, `?`, `[abc]`, `[a-z]`, `[!x]`.
fn wildcard(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative with one backtrack point for the last `*`: linear enough for file names.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() {
            match pattern[p] {
                b'*' => {
                    star = Some((p, n));
                    p += 1;
                    continue;
                }
                b'?' => {
                    p += 1;
                    n += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, len)) = class(&pattern[p..], name[n]) {
                        if matched {
                            p += len;
                            n += 1;
                            continue;
                        }
                    } else if name[n] == b'[' {
                        p += 1;
                        n += 1;
                        continue;
                    }
                }
                c if c == name[n] => {
                    p += 1;
                    n += 1;
                    continue;
                }
                _ => {}
            }
        }
        match star {
            Some((sp, sn)) => {
                p = sp + 1;
                n = sn + 1;
                star = Some((sp, sn + 1));
            }
            None => return false,
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A `[…]` class at the start of `pattern`: whether `c` matches, and the class length.
fn class(pattern: &[u8], c: u8) -> Option<(bool, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < pattern.len() {
        if pattern[i] == b']' && !first {
            return Some((matched != negate, i + 1));
        }
        first = false;
        if pattern.get(i + 1) == Some(&b'-') && pattern.get(i + 2).is_some_and(|&e| e != b']') {
            let (lo, hi) = (pattern[i], pattern[i + 2]);
            matched |= lo <= c && c <= hi;
            i += 3;
        } else {
            matched |= pattern[i] == c;
            i += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::wildcard;

    #[test]
    fn wildcards() {
        let m = |p: &str, n: &str| wildcard(p.as_bytes(), n.as_bytes());
        assert!(m("*.conf", "a.conf"));
        assert!(m("*.conf", ".conf"));
        assert!(!m("*.conf", "a.conf.bak"));
        assert!(m("a?c", "abc"));
        assert!(m("[ab]*", "bz"));
        assert!(!m("[!ab]*", "bz"));
        assert!(m("[a-c]x", "bx"));
        assert!(m("*", "anything"));
        assert!(m("*a*b*", "xxaxxbxx"));
        assert!(!m("*a*b*", "xxbxxaxx"));
        assert!(m("[", "["));
    }
}
