//! The `certgate` binary: command-line parsing and wiring only; the work lives in the
//! library crates (`certgate-config`, `certgate-pki`, `certgate-identity`, `certgate-proxy`).
#![forbid(unsafe_code)]

mod certs;
mod demo;
mod echo;
mod import_nginx;

// glibc's allocator showed up at ~12 % of a keep-alive profile (many small, short-lived
// header and buffer allocations across two threads); mimalloc's thread-local free lists
// fit that pattern.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use certgate_config::Config;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "certgate",
    version,
    about = "mTLS reverse-proxy gateway: verifies client certificates and forwards the caller's identity"
)]
struct Cli {
    /// Configuration file [default: gateway.yaml]; for run, check, reload and certs
    /// inspect, which also take it after the command name.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway in the foreground (the default command).
    Run(RunArgs),
    /// Check the configuration and every file it names, like `nginx -t`.
    Check(ConfigArg),
    /// Check the configuration, then tell the running gateway to reload it (SIGHUP).
    Reload(ReloadArgs),
    /// Zero set-up demo: ephemeral PKI, built-in echo upstream, gateway on 127.0.0.1:8443.
    Demo(demo::DemoArgs),
    /// Certificate tooling: init, issue, p12, inspect, verify, ticket-key, url-key.
    Certs(Box<certs::CertsArgs>),
    /// Convert an nginx configuration's mTLS server blocks into gateway.yaml. Exit 0:
    /// complete; 2: written, but the directives listed on stderr were not carried over;
    /// 1: nothing written.
    ///
    /// Access checks (`if ($ssl_client_verify != SUCCESS) { return 403; }`,
    /// `if ($ssl_client_s_dn !~ "…")`, `map` allow-lists, …) become require_client_cert,
    /// allow and deny rules when they can be carried over exactly. Any other check that
    /// can refuse a request (other return codes or variables, allow/deny by address,
    /// auth_basic, auth_request, limit_except) makes the routes it covers refuse every
    /// request (`deny_all: true`, with a comment naming the nginx line) and exits 2: the
    /// output is never more open than nginx.
    ImportNginx(import_nginx::ImportArgs),
}

/// `-c/--config` after the command name, on the commands that read a configuration
/// (`certgate check -c gw.yaml`, as well as `certgate -c gw.yaml check`).
#[derive(clap::Args, Default)]
pub(crate) struct ConfigArg {
    /// Configuration file [default: gateway.yaml].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
}

impl ConfigArg {
    /// The file to read: given after the command, else before it, else `gateway.yaml`.
    fn resolve(self, before: Option<PathBuf>) -> anyhow::Result<PathBuf> {
        Ok(resolve_config(before, self.config)?.unwrap_or_else(|| PathBuf::from("gateway.yaml")))
    }
}

/// `-c` before and after the command name: either one, or both naming the same file.
pub(crate) fn resolve_config(
    before: Option<PathBuf>,
    after: Option<PathBuf>,
) -> anyhow::Result<Option<PathBuf>> {
    match (before, after) {
        (Some(a), Some(b)) if a != b => anyhow::bail!(
            "-c/--config given twice ({} and {}); give it once",
            a.display(),
            b.display()
        ),
        (a, b) => Ok(b.or(a)),
    }
}

#[derive(clap::Args)]
struct ReloadArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// The pid file `certgate run` wrote (default: `pid_file` in the configuration).
    #[arg(long)]
    pid_file: Option<PathBuf>,
}

#[derive(clap::Args, Default)]
struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Write the process id here, for `certgate reload` and `kill` (default: `pid_file` in
    /// the configuration; none without it). Removed on a clean exit.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Worker threads (default: one per CPU core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Reload by itself when gateway.yaml or a file it names changes (as `watch: true`).
    #[arg(long)]
    watch: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = cli.config;
    let result = match cli.command {
        // Its own exit codes (2: written but incomplete).
        Some(Command::ImportNginx(args)) => match no_config("import-nginx", &config) {
            Ok(()) => return import_nginx::main(args),
            Err(e) => Err(e),
        },
        Some(Command::Certs(args)) => certs::run(*args, config),
        Some(Command::Check(args)) => args.resolve(config).and_then(|path| check(&path)),
        Some(Command::Reload(args)) => {
            let pid_file = args.pid_file;
            args.config
                .resolve(config)
                .and_then(|path| reload(&path, pid_file))
        }
        Some(Command::Demo(args)) => no_config("demo", &config).and_then(|()| demo::run(args)),
        Some(Command::Run(mut args)) => std::mem::take(&mut args.config)
            .resolve(config)
            .and_then(|path| run(&path, args)),
        None => ConfigArg::default()
            .resolve(config)
            .and_then(|path| run(&path, RunArgs::default())),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if STDERR_JSON.load(std::sync::atomic::Ordering::Relaxed) {
                // A log collector reading JSON lines gets the reason the process stops too.
                tracing::error!("{e:#}");
            } else {
                eprintln!("certgate: {e:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// A command that reads no configuration refuses `-c` rather than ignore it.
pub(crate) fn no_config(command: &str, config: &Option<PathBuf>) -> anyhow::Result<()> {
    match config {
        Some(path) => anyhow::bail!(
            "`{command}` reads no configuration file (-c {}); -c/--config is for run, check, \
             reload and certs inspect",
            path.display()
        ),
        None => Ok(()),
    }
}

/// Set once the JSON subscriber is installed: errors are then logged, not printed.
static STDERR_JSON: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Logs go to stderr; pingora's `log` records are bridged into the same stream. `text`
/// (the default) has terminal colours only when stderr is a terminal (and `NO_COLOR` is
/// not set); `json` writes one object per line for log collectors. Installed once, when
/// the configuration is known: a reload changes neither the level nor the format.
pub(crate) fn init_logging(log: &certgate_config::LogConfig) {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level_directives(&log.level)));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let installed = match log.stderr_format {
        certgate_config::StderrFormat::Text => {
            let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
            builder
                .with_ansi(std::io::stderr().is_terminal() && !no_color)
                .try_init()
        }
        certgate_config::StderrFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    if installed.is_ok() && log.stderr_format == certgate_config::StderrFormat::Json {
        STDERR_JSON.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// pingora's `log` targets whose info lines narrate its own start and stop ("Bootstrap
/// starting", "Starting service: …", "grace period 11s starts"): at `log.level: info`
/// they are shown only from warn up, so certgate's one start line and one shutdown line
/// say what runs. `debug` and `trace` show them; `RUST_LOG` overrides all of this.
const PINGORA_NARRATION: &[&str] = &["pingora_core::server", "pingora_core::services"];

fn level_directives(level: &str) -> String {
    if level == "info" {
        PINGORA_NARRATION
            .iter()
            .fold(level.to_string(), |all, target| {
                format!("{all},{target}=warn")
            })
    } else {
        level.to_string()
    }
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|errors| match path.symlink_metadata() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::anyhow!("{errors}\n{}", missing_config_hint(path))
        }
        _ => anyhow::anyhow!("{errors}"),
    })
}

/// Where a first configuration comes from, for someone who has none yet.
fn missing_config_hint(path: &Path) -> String {
    format!(
        "To get a configuration:\n  \
         certgate certs init        a development PKI in certs/ and a gateway.yaml for it\n  \
         certgate import-nginx nginx.conf -o {}    from an nginx mTLS set-up\n  \
         the commented example gateway.yaml in certgate's repository (docs/config.md)\n\
         Or try it without one: certgate demo (its own PKI and a built-in echo backend).",
        path.display()
    )
}

fn check(path: &Path) -> anyhow::Result<()> {
    checked(path).map(|_| ())
}

/// [`check`], returning the configuration it checked.
fn checked(path: &Path) -> anyhow::Result<Config> {
    let config = load(path)?;
    let compiled =
        certgate_proxy::compile(&config).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    certgate_proxy::access_log::check_target(&config).map_err(|e| anyhow::anyhow!("{e}"))?;
    for warning in &compiled.warnings {
        eprintln!("certgate: [warn] {warning}");
    }
    println!(
        "certgate: configuration file {} test is successful",
        path.display()
    );
    Ok(config)
}

pub(crate) fn run_config(
    config: Config,
    options: certgate_proxy::RunOptions,
) -> anyhow::Result<()> {
    match certgate_proxy::run(config, options) {
        Ok(never) => match never {},
        Err(errors) => Err(anyhow::anyhow!("{errors}")),
    }
}

fn run(path: &Path, args: RunArgs) -> anyhow::Result<()> {
    let config = load(path).with_context(|| "not started")?;
    init_logging(&config.log);
    let pid_file = args.pid_file.or_else(|| config.pid_file.clone());
    run_config(
        config,
        certgate_proxy::RunOptions {
            threads: args.threads,
            pid_file,
            watch: args.watch,
        },
    )
}

/// How long `certgate reload` waits for the gateway's answer: reading and checking every
/// file, and resolving upstream names, takes well under a second on a healthy host.
const RELOAD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Validates first, so a broken config is reported here and never reaches the gateway;
/// then signals the process in the pid file and waits for what it did with the file
/// (`certgate_proxy::pid_file`): exit 0 only when the new configuration is in force.
fn reload(path: &Path, pid_file: Option<PathBuf>) -> anyhow::Result<()> {
    use certgate_proxy::pid_file::{status_path, Outcome, ReloadStatus};
    use nix::errno::Errno;
    use nix::sys::signal::{kill, Signal};

    let config = checked(path)?;
    let Some(pid_file) = pid_file.or(config.pid_file) else {
        anyhow::bail!(
            "no pid file to find the running gateway by: give `certgate run` and `certgate reload` \
             the same --pid-file, or set pid_file: in {} (or send SIGHUP to the process yourself)",
            path.display()
        );
    };
    let text = match std::fs::read_to_string(&pid_file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => anyhow::bail!(
            "no pid file {}: no certgate runs with it (it is written while one runs and removed when it exits); nothing signalled",
            pid_file.display()
        ),
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read the pid file {}", pid_file.display()))
        }
    };
    let pid: i32 = text
        .trim()
        .parse()
        .ok()
        .filter(|pid| *pid > 0)
        .with_context(|| {
            format!(
                "{}: not a process id: {:?}",
                pid_file.display(),
                text.trim()
            )
        })?;
    let process = nix::unistd::Pid::from_raw(pid);
    if kill(process, None) == Err(Errno::ESRCH) {
        anyhow::bail!(
            "stale pid file {}: no process {pid} (certgate did not exit cleanly); nothing signalled",
            pid_file.display()
        );
    }
    let status_file = status_path(&pid_file);
    let ours = |status: &ReloadStatus| i64::from(status.pid) == i64::from(pid);
    // A reload already running has this number: the answer must come from a later one.
    let seen = ReloadStatus::read(&status_file)
        .filter(ours)
        .map_or(0, |status| status.sequence);
    kill(process, Signal::SIGHUP)
        .with_context(|| format!("cannot signal process {pid} from {}", pid_file.display()))?;
    let deadline = std::time::Instant::now() + RELOAD_WAIT;
    loop {
        if let Some(status) = ReloadStatus::read(&status_file).filter(ours) {
            if status.sequence > seen {
                match status.outcome {
                    Outcome::Reloaded { generation } => {
                        println!(
                            "certgate: process {pid} reloaded {} (configuration generation {generation})",
                            path.display()
                        );
                        return Ok(());
                    }
                    Outcome::Refused { reason } => anyhow::bail!(
                        "process {pid} refused the new configuration and keeps running the old one: {reason}"
                    ),
                    Outcome::Started | Outcome::Running => {}
                }
            }
        }
        if kill(process, None) == Err(Errno::ESRCH) {
            anyhow::bail!("process {pid} exited before it answered the reload");
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "process {pid} was signalled but did not report the outcome in {} within {}s; \
                 see its log (the reload may still be running)",
                status_file.display(),
                RELOAD_WAIT.as_secs()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
