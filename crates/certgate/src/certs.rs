//! `certgate certs …`: the openssl-recipe replacement (init, issue, p12, inspect, verify),
//! and `ticket-key` for `tls.session_ticket_keys`, `url-key` for `signed_urls.key_file`.
//!
//! Command-line parsing and printing only: certificates are made by
//! `certgate_pki::issue`, bundles by `certgate_pki::p12`, chains are verified by the
//! gateway's own `certgate_pki::ChainVerifier`, and identity headers come from
//! `certgate_identity`, so what this prints is what the gateway does.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use certgate_pki::issue::{self, Authority, CertKind, IssueError, IssueRequest, KeyAlgorithm};
use certgate_pki::p12::{P12Options, P12Profile};

#[derive(clap::Args)]
pub struct CertsArgs {
    #[command(subcommand)]
    command: CertsCommand,
}

#[derive(clap::Subcommand)]
enum CertsCommand {
    /// Create a development PKI: a CA, a server certificate for localhost and one client certificate.
    Init(InitArgs),
    /// Issue one more certificate (client, server or intermediate CA) signed by a CA.
    Issue(IssueArgs),
    /// Bundle a certificate and its key into a PKCS#12 (.p12) file for browsers and OS key stores.
    P12(P12Args),
    /// Show a certificate file (PEM or DER, one certificate or a chain) and the identity headers it would produce.
    Inspect(InspectArgs),
    /// Verify a client certificate (chain) against a CA with the gateway's own verifier.
    Verify(VerifyArgs),
    /// Write a new session ticket key file (80 random bytes, mode 0600) for tls.session_ticket_keys.
    TicketKey(TicketKeyArgs),
    /// Write a new signed-URL key file (32 random bytes, base64, mode 0600) for routes[].signed_urls.key_file.
    UrlKey(UrlKeyArgs),
}

#[derive(clap::Args)]
struct InitArgs {
    /// Directory to write ca.crt, ca.key, server.crt, server.key, client.crt, client.key to.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// Use RSA keys of this size (2048, 3072 or 4096) instead of ECDSA P-256.
    #[arg(long, value_name = "BITS")]
    rsa: Option<u32>,
    /// Validity of the server and client certificates, in days.
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Validity of the CA certificate, in days.
    #[arg(long, default_value_t = 3650)]
    ca_days: u32,
    /// Extra DNS name for the server certificate (besides localhost); repeatable.
    #[arg(long, value_name = "NAME")]
    dns: Vec<String>,
    /// Extra IP address for the server certificate (besides 127.0.0.1 and ::1); repeatable.
    #[arg(long, value_name = "ADDR")]
    ip: Vec<IpAddr>,
    /// Common name of the client certificate.
    #[arg(long, default_value = "certgate-client")]
    client_cn: String,
    /// Encrypt ca.key with the passphrase in this environment variable (AES-256, like openssl's -aes256).
    #[arg(long, value_name = "VAR")]
    ca_passphrase_env: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    /// TLS client certificate (EKU clientAuth): what the gateway verifies.
    Client,
    /// TLS server certificate (EKU serverAuth).
    Server,
    /// Intermediate CA (CA:TRUE, pathlen), to sign further certificates with --ca.
    Intermediate,
}

#[derive(clap::Args)]
struct IssueArgs {
    /// What to issue.
    #[arg(value_enum)]
    kind: Kind,
    /// Common name (CN). Required for client certificates; servers default to the first --dns/--ip.
    #[arg(long)]
    cn: Option<String>,
    /// Organization (O).
    #[arg(long)]
    o: Option<String>,
    /// Organizational unit (OU).
    #[arg(long)]
    ou: Option<String>,
    /// DNS name SAN; repeatable.
    #[arg(long, value_name = "NAME")]
    dns: Vec<String>,
    /// IP address SAN; repeatable.
    #[arg(long, value_name = "ADDR")]
    ip: Vec<IpAddr>,
    /// URI SAN, e.g. a SPIFFE ID spiffe://example.org/ns/prod/sa/api; repeatable.
    #[arg(long)]
    uri: Vec<String>,
    /// E-mail address SAN; repeatable.
    #[arg(long)]
    email: Vec<String>,
    /// Validity in days [default: 365, intermediates 1825; never beyond the CA's].
    #[arg(long)]
    days: Option<u32>,
    /// Certificate of the CA to sign with (a root or an intermediate; further certificates in the file are its chain).
    #[arg(long, default_value = "certs/ca.crt")]
    ca: PathBuf,
    /// Private key of the CA [default: --ca with the extension .key].
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// Environment variable holding the passphrase of an encrypted CA key.
    #[arg(long, value_name = "VAR")]
    ca_passphrase_env: Option<String>,
    /// Output path: writes OUT.crt (certificate + intermediates) and OUT.key [default: the CN, next to --ca].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Use an RSA key of this size (2048, 3072 or 4096) instead of ECDSA P-256.
    #[arg(long, value_name = "BITS")]
    rsa: Option<u32>,
    /// Intermediates only: how many further intermediates may sit below this one.
    #[arg(long, default_value_t = 0)]
    pathlen: u8,
    /// Encrypt the new private key with the passphrase in this environment variable.
    #[arg(long, value_name = "VAR")]
    key_passphrase_env: Option<String>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct P12Args {
    /// Certificate (PEM, leaf first; intermediates after it are included).
    #[arg(long)]
    cert: PathBuf,
    /// Private key of the certificate.
    #[arg(long)]
    key: PathBuf,
    /// CA certificate(s) to include (e.g. the root); repeatable.
    #[arg(long)]
    ca: Vec<PathBuf>,
    /// Where to write the .p12 file.
    #[arg(long)]
    out: PathBuf,
    /// Environment variable holding the export password [default: empty password].
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// 3DES and SHA-1 MAC instead of AES-256 and SHA-256, for old importers (older macOS, Windows, Java 8).
    #[arg(long)]
    legacy: bool,
    /// friendlyName of the key [default: the certificate's CN]. The certificates carry
    /// their subject DN as friendlyName (the PKCS#12 writer's choice).
    #[arg(long)]
    name: Option<String>,
    /// Environment variable holding the passphrase of an encrypted --key.
    #[arg(long, value_name = "VAR")]
    key_passphrase_env: Option<String>,
    /// Replace an existing file.
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct InspectArgs {
    /// Certificate file: PEM or DER, one certificate or a chain (leaf first), or a PKCS#12
    /// bundle (.p12/.pfx; its certificates are shown, never its key).
    file: PathBuf,
    /// Environment variable holding the password of a .p12 file [default: empty password].
    #[arg(long, value_name = "VAR")]
    password_env: Option<String>,
    /// Show the identity headers as this configuration's server would set them: verified
    /// against its client_auth CAs, with its identity presets and `set` templates
    /// [default: verified for purpose only, preset nginx].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: Option<PathBuf>,
    /// With -c: the server (its `name`) whose client_auth and identity apply [default: the
    /// first server].
    #[arg(long, value_name = "NAME", requires = "config")]
    server: Option<String>,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// Trusted CA certificate(s), as `client_auth.ca` in gateway.yaml.
    #[arg(long, default_value = "certs/ca.crt")]
    ca: PathBuf,
    /// At most this many intermediates between the certificate and the CA (`client_auth.verify_depth`).
    #[arg(long, default_value_t = 1)]
    depth: u32,
    /// CRL file (PEM or DER); repeatable.
    #[arg(long)]
    crl: Vec<PathBuf>,
    /// Client certificate, followed by its intermediates, as a client would send it.
    cert: PathBuf,
}

#[derive(clap::Args)]
struct TicketKeyArgs {
    /// Where to write the key file.
    #[arg(long)]
    out: PathBuf,
    /// Replace an existing file (atomically: a gateway reading it sees the old or the new key).
    #[arg(long)]
    force: bool,
}

#[derive(clap::Args)]
struct UrlKeyArgs {
    /// Where to write the key file.
    #[arg(long, short = 'o')]
    out: PathBuf,
    /// Replace an existing file (atomically: a gateway reading it sees the old or the new key).
    #[arg(long)]
    force: bool,
}

/// `config`: a `-c` given before `certs`; only `inspect` reads a configuration.
pub fn run(args: CertsArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let no_config = |name: &str| crate::no_config(&format!("certs {name}"), &config);
    let result = match args.command {
        CertsCommand::Init(args) => no_config("init").and_then(|()| init(args)),
        CertsCommand::Issue(args) => no_config("issue").and_then(|()| issue_one(args)),
        CertsCommand::P12(args) => no_config("p12").and_then(|()| p12(args)),
        CertsCommand::Inspect(mut args) => {
            crate::resolve_config(config.clone(), args.config.take()).and_then(|config| {
                args.config = config;
                inspect(args)
            })
        }
        CertsCommand::Verify(args) => no_config("verify").and_then(|()| verify(args)),
        CertsCommand::TicketKey(args) => no_config("ticket-key").and_then(|()| ticket_key(args)),
        CertsCommand::UrlKey(args) => no_config("url-key").and_then(|()| url_key(args)),
    };
    result.map_err(without_repeated_causes)
}

/// `{:#}` prints every cause after its parent; some library errors already quote their
/// cause (`cannot read X: No such file or directory`), which would then appear twice.
fn without_repeated_causes(error: anyhow::Error) -> anyhow::Error {
    let mut message = String::new();
    let mut parent = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parent.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        parent = text;
    }
    anyhow::Error::msg(message)
}

/// A secret from the environment: named on the command line, never typed into it (where
/// it would land in shell history and `ps`).
fn secret_from_env(var: &str, what: &str) -> anyhow::Result<String> {
    match std::env::var(var) {
        Ok(value) if value.is_empty() => bail!("environment variable {var} ({what}) is empty"),
        Ok(value) => Ok(value),
        Err(std::env::VarError::NotPresent) => {
            bail!("environment variable {var} ({what}) is not set")
        }
        Err(std::env::VarError::NotUnicode(_)) => {
            bail!("environment variable {var} ({what}) is not valid UTF-8")
        }
    }
}

fn key_algorithm(rsa: Option<u32>) -> anyhow::Result<KeyAlgorithm> {
    Ok(match rsa {
        Some(bits) => KeyAlgorithm::rsa(bits)?,
        None => KeyAlgorithm::EcdsaP256,
    })
}

/// Adds the command-line hint to library errors that need one.
fn with_hint(error: IssueError, passphrase_flag: &str) -> anyhow::Error {
    match error {
        IssueError::KeyEncrypted { .. } => anyhow::anyhow!("{error} (pass {passphrase_flag} VAR)"),
        other => other.into(),
    }
}

/// nginx's 80-byte `ssl_session_ticket_key` format, as `openssl rand 80` makes it.
fn ticket_key(args: TicketKeyArgs) -> anyhow::Result<()> {
    let key = certgate_pki::tickets::new_key_file()?;
    issue::write_file_set(
        &[issue::OutputFile::secret(&args.out, key.to_vec())],
        args.force,
    )?;
    println!(
        "certgate: wrote {} (session ticket key, 80 bytes, mode 0600)\n\
         To rotate on every replica: add it last in tls.session_ticket_keys, then move it \
         first (it seals new tickets), then after {} hours (the ticket lifetime) remove the \
         old key; reload after each step.",
        args.out.display(),
        certgate_pki::tickets::TICKET_LIFETIME_SECS / 3600
    );
    Ok(())
}

/// A signed-URL HMAC key: base64 text, so it fits a Kubernetes Secret unchanged.
fn url_key(args: UrlKeyArgs) -> anyhow::Result<()> {
    let key = certgate_pki::url_keys::new_key_file()?;
    issue::write_file_set(
        &[issue::OutputFile::secret(&args.out, key.into_bytes())],
        args.force,
    )?;
    println!(
        "certgate: wrote {} (signed-URL key, 32 random bytes base64, mode 0600, key id {})\n\
         To rotate on every replica: list it first in signed_urls.key_file (it signs new \
         URLs) and keep the old key after it until the URLs it signed have expired \
         (max_ttl), then remove the old key; reload after each step.",
        args.out.display(),
        certgate_pki::load_url_key(&args.out)
            .map(|k| certgate_pki::url_keys::key_id(&k))
            .unwrap_or_default()
    );
    Ok(())
}

fn init(args: InitArgs) -> anyhow::Result<()> {
    let key = key_algorithm(args.rsa)?;
    let passphrase = match &args.ca_passphrase_env {
        Some(var) => Some(secret_from_env(var, "CA key passphrase")?),
        None => None,
    };
    let options = issue::DevPkiOptions {
        key,
        ca_days: args.ca_days,
        days: args.days,
        extra_dns: args.dns.clone(),
        extra_ips: args.ip.clone(),
        client_cn: args.client_cn.clone(),
        ca_key_passphrase: passphrase,
        ..issue::DevPkiOptions::default()
    };
    // Refuse before the (possibly slow) key generation; writing checks again.
    if !args.force {
        let existing: Vec<PathBuf> = issue::DEV_PKI_FILES
            .iter()
            .map(|name| args.dir.join(name))
            .filter(|path| path.symlink_metadata().is_ok())
            .collect();
        if !existing.is_empty() {
            return Err(IssueError::Exists { paths: existing }.into());
        }
    }
    if key.is_rsa() {
        eprintln!("certgate: generating {key} keys (this can take a while)");
    }
    let pki = issue::dev_pki(&options).context("cannot create the PKI")?;
    let written = issue::write_dev_pki(&pki, &args.dir, args.force)?;

    let mut server_names = vec!["localhost".to_string(), "127.0.0.1".into(), "::1".into()];
    server_names.extend(args.dns.iter().cloned());
    server_names.extend(args.ip.iter().map(ToString::to_string));
    let ca_key_note = if args.ca_passphrase_env.is_some() {
        "encrypted, "
    } else {
        ""
    };
    let notes = [
        "CA certificate: clients trust it; gateway.yaml `client_auth.ca`".to_string(),
        format!("CA private key ({ca_key_note}mode 0600): signs new certificates, keep it secret"),
        format!(
            "server certificate for {} ({} days)",
            server_names.join(", "),
            args.days
        ),
        "server private key (mode 0600)".to_string(),
        format!(
            "client certificate CN={} ({} days)",
            args.client_cn, args.days
        ),
        "client private key (mode 0600)".to_string(),
    ];
    let width = written
        .iter()
        .map(|p| p.display().to_string().len())
        .max()
        .unwrap_or(0);
    println!(
        "certgate: wrote a development PKI ({key}) in {}:",
        args.dir.display()
    );
    for (path, note) in written.iter().zip(&notes) {
        println!("  {:width$}  {note}", path.display().to_string());
    }
    let d = args.dir.display();
    let ca_flag = if args.dir == Path::new("certs") {
        String::new()
    } else {
        format!(" --ca {d}/ca.crt")
    };
    // A configuration beside the certificates (for the default `certs`: ./gateway.yaml,
    // what `certgate run` reads), unless there is one already: that one is the user's,
    // --force or not.
    let (config, pki_in_config) = starter_config_path(&args.dir);
    let shown = config.display();
    let config_note = if config.symlink_metadata().is_ok() {
        format!(
            "{shown} exists and was left as it is: its tls and client_auth should name the \
             files above"
        )
    } else {
        let yaml = starter_config(&args.dir, &pki_in_config);
        issue::write_file_set(&[issue::OutputFile::public(&config, yaml)], false)?;
        format!(
            "wrote {shown}: https://localhost:{STARTER_PORT}/ with these certificates, in \
             front of a backend on http://{STARTER_BACKEND}"
        )
    };
    let c_flag = if config == Path::new(CONFIG_FILE) {
        String::new()
    } else {
        format!(" -c {shown}")
    };
    println!(
        "\n{config_note}\n\nNext:\n  \
         certgate check{c_flag}\n  \
         certgate run{c_flag}   # start your backend on {STARTER_BACKEND} first (e.g. python3 -m http.server 5000)\n  \
         curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key https://localhost:{STARTER_PORT}/\n\n\
         No backend yet? `certgate demo` runs a gateway with its own PKI in front of a built-in echo.\n\n\
         More clients, and a .p12 for a browser:\n  \
         certgate certs issue client --cn alice{ca_flag}\n  \
         certgate certs p12 --cert {d}/client.crt --key {d}/client.key --ca {d}/ca.crt --out {d}/client.p12 --password-env P12_PASSWORD"
    );
    Ok(())
}

/// The configuration `certgate run` reads by default, which `certs init` writes when absent.
const CONFIG_FILE: &str = "gateway.yaml";
const STARTER_PORT: u16 = 8443;
const STARTER_BACKEND: &str = "127.0.0.1:5000";

/// Where `certs init` puts the starter configuration for a PKI in `dir`: beside the
/// directory (`certs` → `gateway.yaml`, `/etc/certgate/certs` →
/// `/etc/certgate/gateway.yaml`), or in it when it has no parent (`.`); and the PKI
/// directory as seen from the configuration's directory, which relative paths in it are
/// resolved against.
fn starter_config_path(dir: &Path) -> (PathBuf, PathBuf) {
    match (dir.parent(), dir.file_name()) {
        (Some(parent), Some(name)) => (parent.join(CONFIG_FILE), PathBuf::from(name)),
        _ => (dir.join(CONFIG_FILE), PathBuf::new()),
    }
}

/// A minimal working gateway.yaml for the PKI `certs init` wrote in `dir`, which the
/// configuration's directory sees as `pki`.
fn starter_config(dir: &Path, pki: &Path) -> String {
    // YAML double-quoted strings take JSON's escapes.
    let file =
        |name: &str| serde_json::to_string(&pki.join(name).to_string_lossy()).unwrap_or_default();
    format!(
        "# Written by `certgate certs init`: the development PKI in {dir} in front of a\n\
         # plain-HTTP backend. Every key is described in docs/config.md (and in the commented\n\
         # gateway.yaml of certgate's repository). Check it with `certgate check`.\n\
         pid_file: certgate.pid          # beside this file: `certgate reload`, `kill -USR1 $(cat certgate.pid)`\n\
         servers:\n  \
         - name: dev\n    \
           listen: [\"127.0.0.1:{STARTER_PORT}\"]\n    \
           tls:\n      \
             cert: {cert}\n      \
             key: {key}\n    \
           client_auth:\n      \
             verify: on                # a verified client certificate is required\n      \
             ca: {ca}\n    \
           identity:\n      \
             preset: nginx             # X-SSL-Client-Verify, X-SSL-Client-S-DN, …\n    \
           routes:\n      \
             - match: {{ path_prefix: / }}\n        \
               upstream: app\n\
         upstreams:\n  \
         app:\n    \
           servers: [\"{STARTER_BACKEND}\"]\n",
        dir = dir.display(),
        cert = file("server.crt"),
        key = file("server.key"),
        ca = file("ca.crt"),
    )
}

/// `certs/alice` → (`certs/alice.crt`, `certs/alice.key`); a given `.crt`/`.pem`/`.cer`
/// extension is kept for the certificate and replaced by `.key` for the key.
fn output_paths(out: &Path) -> (PathBuf, PathBuf) {
    match out.extension().and_then(|e| e.to_str()) {
        Some("crt" | "pem" | "cer") => (out.to_path_buf(), out.with_extension("key")),
        _ => {
            let mut cert = out.as_os_str().to_owned();
            cert.push(".crt");
            let mut key = out.as_os_str().to_owned();
            key.push(".key");
            (PathBuf::from(cert), PathBuf::from(key))
        }
    }
}

/// A file name from a common name: `Alice Smith` → `alice-smith`.
fn file_stem(common_name: &str) -> String {
    let mut stem = String::new();
    for c in common_name.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' || c == '-' {
            stem.push(c.to_ascii_lowercase());
        } else if !stem.ends_with('-') {
            stem.push('-');
        }
    }
    let stem = stem.trim_matches(|c| c == '-' || c == '.').to_string();
    if stem.is_empty() {
        "cert".into()
    } else {
        stem
    }
}

fn issue_one(args: IssueArgs) -> anyhow::Result<()> {
    let kind = match args.kind {
        Kind::Client => CertKind::Client,
        Kind::Server => CertKind::Server,
        Kind::Intermediate => CertKind::Intermediate {
            path_len: args.pathlen,
        },
    };
    let common_name = match (&args.cn, args.kind) {
        (Some(cn), _) => cn.clone(),
        (None, Kind::Client) => {
            bail!("--cn is required for a client certificate: it is the identity the backend sees")
        }
        (None, Kind::Intermediate) => "certgate intermediate CA".into(),
        (None, Kind::Server) => match (args.dns.first(), args.ip.first()) {
            (Some(dns), _) => dns.clone(),
            (None, Some(ip)) => ip.to_string(),
            (None, None) => bail!(
                "a server certificate needs --dns NAME or --ip ADDR (or --cn with a host name)"
            ),
        },
    };
    let mut request = IssueRequest::new(kind, common_name.clone());
    request.organization = args.o.clone();
    request.organizational_unit = args.ou.clone();
    request.dns_names = args.dns.clone();
    request.ip_addresses = args.ip.clone();
    request.uris = args.uri.clone();
    request.emails = args.email.clone();
    if let Some(days) = args.days {
        request.days = days;
    }
    request.key = key_algorithm(args.rsa)?;

    let ca_key = args
        .ca_key
        .clone()
        .unwrap_or_else(|| args.ca.with_extension("key"));
    let ca_passphrase = match &args.ca_passphrase_env {
        Some(var) => Some(secret_from_env(var, "CA key passphrase")?),
        None => None,
    };
    let key_passphrase = match &args.key_passphrase_env {
        Some(var) => Some(secret_from_env(var, "new key passphrase")?),
        None => None,
    };
    let (cert_path, key_path) = match &args.out {
        Some(out) => output_paths(out),
        None => {
            let dir = args
                .ca
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            output_paths(&dir.join(file_stem(&common_name)))
        }
    };
    // Refuse before the (possibly slow) key generation, not only when writing.
    if !args.force {
        let existing: Vec<PathBuf> = [&cert_path, &key_path]
            .into_iter()
            .filter(|p| p.exists())
            .cloned()
            .collect();
        if !existing.is_empty() {
            return Err(IssueError::Exists { paths: existing }.into());
        }
    }

    let authority = Authority::load(&args.ca, &ca_key, ca_passphrase.as_deref())
        .map_err(|e| with_hint(e, "--ca-passphrase-env"))?;
    if request.key.is_rsa() {
        eprintln!(
            "certgate: generating an {} key (this can take a while)",
            request.key
        );
    }
    let issued = authority.issue(&request)?;
    for warning in &issued.warnings {
        eprintln!("certgate: [warn] {warning}");
    }
    issued.write(&cert_path, &key_path, key_passphrase.as_deref(), args.force)?;

    let what = match kind {
        CertKind::Client => "client certificate",
        CertKind::Server => "server certificate",
        CertKind::Intermediate { .. } => "intermediate CA certificate",
    };
    let intermediates = issued.chain.len() - 1;
    let chain_note = match intermediates {
        0 => "certificate".to_string(),
        1 => "certificate + 1 intermediate".to_string(),
        n => format!("certificate + {n} intermediates"),
    };
    println!(
        "certgate: issued {what} CN={common_name} (serial {}, expires {}), signed by {}",
        issued.serial,
        issue::format_time(issued.not_after),
        args.ca.display()
    );
    println!("  {}  {chain_note}", cert_path.display());
    let key_note = if key_passphrase.is_some() {
        "private key (encrypted, mode 0600)"
    } else {
        "private key (mode 0600)"
    };
    println!("  {}  {key_note}", key_path.display());
    if let CertKind::Intermediate { .. } = kind {
        println!(
            "\nSign with it:\n  certgate certs issue client --cn NAME --ca {} --ca-key {}",
            cert_path.display(),
            key_path.display()
        );
    }
    Ok(())
}

fn p12(args: P12Args) -> anyhow::Result<()> {
    let password = match &args.password_env {
        Some(var) => secret_from_env(var, "PKCS#12 password")?,
        None => String::new(),
    };
    let key_passphrase = match &args.key_passphrase_env {
        Some(var) => Some(secret_from_env(var, "key passphrase")?),
        None => None,
    };
    if !args.force && args.out.exists() {
        return Err(IssueError::Exists {
            paths: vec![args.out.clone()],
        }
        .into());
    }
    let chain = issue::read_certificates(&args.cert)?;
    let key = issue::read_private_key(&args.key, key_passphrase.as_deref())
        .map_err(|e| with_hint(e, "--key-passphrase-env"))?;
    let mut extra = Vec::new();
    for ca in &args.ca {
        extra.extend(issue::read_certificates(ca)?);
    }
    let options = P12Options {
        password: &password,
        profile: if args.legacy {
            P12Profile::Legacy
        } else {
            P12Profile::Modern
        },
        friendly_name: args.name.as_deref(),
    };
    let der =
        certgate_pki::p12::build_p12(&chain, &key, &extra, &options).map_err(|e| match e {
            certgate_pki::p12::P12Error::KeyMismatch => anyhow::anyhow!(
                "the private key {} does not match the certificate {}",
                args.key.display(),
                args.cert.display()
            ),
            other => other.into(),
        })?;
    issue::write_file_set(&[issue::OutputFile::secret(&args.out, der)], args.force)?;

    let profile = if args.legacy {
        "legacy: 3DES, SHA-1 MAC"
    } else {
        "AES-256-CBC, SHA-256 MAC"
    };
    let protection = match &args.password_env {
        Some(var) => format!("password from ${var}"),
        None => "empty password".to_string(),
    };
    let mut certificates: Vec<&[u8]> = chain.iter().chain(&extra).map(|c| c.as_ref()).collect();
    certificates.sort_unstable();
    certificates.dedup();
    println!(
        "certgate: wrote {} ({profile}; {protection}): the key and {} certificate{}, mode 0600",
        args.out.display(),
        certificates.len(),
        if certificates.len() == 1 { "" } else { "s" }
    );
    if password.is_empty() {
        println!(
            "  some importers (macOS Keychain) refuse an empty password: use --password-env VAR"
        );
    }
    Ok(())
}

fn inspect(args: InspectArgs) -> anyhow::Result<()> {
    let chain = inspected_certificates(&args)?;
    let count = chain.len();
    for (i, der) in chain.iter().enumerate() {
        let summary = issue::inspect::summarize(der)
            .with_context(|| format!("{}: certificate #{}", args.file.display(), i + 1))?;
        // The identity crate's RFC 2253 formatting is OpenSSL's (and nginx's) byte for byte.
        let names = certgate_identity::ClientCert::from_chain(std::slice::from_ref(der));
        if count > 1 {
            let role = if i == 0 {
                "leaf"
            } else if summary.self_signed {
                "root"
            } else {
                "intermediate"
            };
            println!("Certificate {} of {count} ({role})", i + 1);
        }
        match &names {
            Ok(cert) => {
                println!("  Subject:      {}", cert.subject_dn());
                println!("  Issuer:       {}", cert.issuer_dn());
            }
            Err(e) => println!("  Subject:      (cannot be printed: {e})"),
        }
        println!("  Serial:       {}", summary.serial);
        println!("  Not before:   {}", issue::format_time(summary.not_before));
        let days = summary.days_left();
        let remaining = if !summary.is_valid_now() && days >= 0 {
            "not yet valid".to_string()
        } else if days < 0 {
            format!("EXPIRED {} days ago", -days)
        } else {
            format!("{days} days left")
        };
        println!(
            "  Not after:    {} ({remaining})",
            issue::format_time(summary.not_after)
        );
        if !summary.subject_alt_names.is_empty() {
            println!("  SANs:         {}", summary.subject_alt_names.join(", "));
        }
        println!("  Key:          {}", summary.key);
        if let Some(bc) = &summary.basic_constraints {
            println!("  Basic constr: {bc}");
        }
        if !summary.key_usage.is_empty() {
            println!("  Key usage:    {}", summary.key_usage.join(", "));
        }
        if !summary.extended_key_usage.is_empty() {
            println!("  EKU:          {}", summary.extended_key_usage.join(", "));
        }
        println!("  SHA-1:        {}", summary.sha1_fingerprint);
        println!("  SHA-256:      {}", summary.sha256_fingerprint);
        if i + 1 < count {
            println!();
        }
    }

    let view = match &args.config {
        Some(path) => GatewayView::from_config(path, args.server.as_deref())?,
        None => GatewayView::default_view()?,
    };
    let client = certgate_identity::ClientCert::from_chain(&chain).with_context(|| {
        format!(
            "{}: the gateway could not use this certificate",
            args.file.display()
        )
    })?;
    let (verify, note, untrusted_only) = view.verify(&chain);
    println!("\n{}", view.title);
    let forwarded = match (&verify, view.mode) {
        (certgate_identity::VerifyResult::Failed(reason), mode) => {
            if mode == InspectMode::OptionalNoCa && untrusted_only {
                println!("  (verify: optional_no_ca forwards it with FAILED:{reason})");
                true
            } else {
                println!(
                    "  none: the gateway refuses this certificate: FAILED:{reason} \
                     (a 400 \"The SSL certificate error\", or a TLS alert under on_failure: \
                     handshake; nothing is forwarded){note}"
                );
                false
            }
        }
        _ => {
            if !note.is_empty() {
                println!("  ({})", note.trim_start_matches("; "));
            }
            true
        }
    };
    if !forwarded {
        return Ok(());
    }
    let cert = match view.mode {
        InspectMode::Off => None,
        _ => Some(Arc::new(client)),
    };
    let identity = certgate_identity::Identity {
        verify,
        cert,
        tls: certgate_identity::TlsInfo {
            protocol: "TLSv1.3".into(),
            cipher: "TLS_AES_128_GCM_SHA256".into(),
            server_name: None,
            remote_addr: IpAddr::from([127, 0, 0, 1]),
            remote_port: 0,
        },
    };
    let now_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for (name, value) in view.plan.prepare(&identity, now_unix).headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        const SHOWN: usize = 96;
        if value.len() > SHOWN {
            let cut = (0..=SHOWN)
                .rev()
                .find(|&i| value.is_char_boundary(i))
                .unwrap_or(0);
            println!("  {name}: {}… ({} bytes)", &value[..cut], value.len());
        } else {
            println!("  {name}: {value}");
        }
    }
    Ok(())
}

/// The certificates of the file `inspect` was given: PEM or DER certificates, or the
/// certificates of a PKCS#12 bundle (leaf first).
fn inspected_certificates(
    args: &InspectArgs,
) -> anyhow::Result<Vec<rustls_pki_types::CertificateDer<'static>>> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    if !certgate_pki::p12::looks_like_pkcs12(&bytes) {
        if args.password_env.is_some() {
            bail!(
                "{}: --password-env is for PKCS#12 (.p12) files; this is not one",
                args.file.display()
            );
        }
        return Ok(issue::read_certificates(&args.file)?);
    }
    let password = match &args.password_env {
        Some(var) => secret_from_env(var, "PKCS#12 password")?,
        None => String::new(),
    };
    certgate_pki::p12::read_p12_certificates(&bytes, &password).map_err(|e| {
        let hint = if args.password_env.is_none() {
            " (pass --password-env VAR for a password-protected file)"
        } else {
            ""
        };
        anyhow::anyhow!("{}: a PKCS#12 file: {e}{hint}", args.file.display())
    })
}

/// What `client_auth.verify` the identity headers are shown for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum InspectMode {
    /// No configuration: the purpose checks only, as if the chain were trusted.
    PurposeOnly,
    On,
    OptionalNoCa,
    Off,
}

/// How the gateway would treat a client presenting the inspected chain.
struct GatewayView {
    title: String,
    mode: InspectMode,
    verifier: Option<certgate_pki::ChainVerifier>,
    plan: certgate_identity::HeaderPlan,
}

impl GatewayView {
    fn default_view() -> anyhow::Result<GatewayView> {
        Ok(GatewayView {
            title: "Identity headers (preset nginx, if a client_auth CA verifies the chain):"
                .into(),
            mode: InspectMode::PurposeOnly,
            verifier: None,
            plan: certgate_identity::HeaderPlan::new(&[certgate_identity::Preset::Nginx], &[])?,
        })
    }

    /// The server's `client_auth` (CAs, CRLs, depth) and `identity` from a configuration.
    fn from_config(path: &Path, server: Option<&str>) -> anyhow::Result<GatewayView> {
        let config = certgate_config::Config::load(path).map_err(|e| anyhow::anyhow!("{e}"))?;
        let chosen = match server {
            Some(name) => config
                .servers
                .iter()
                .find(|s| s.name == name)
                .with_context(|| {
                    let names: Vec<&str> = config.servers.iter().map(|s| s.name.as_str()).collect();
                    format!(
                        "{}: no server named {name:?} (servers: {})",
                        path.display(),
                        names.join(", ")
                    )
                })?,
            None => config
                .servers
                .first()
                .with_context(|| format!("{}: no server", path.display()))?,
        };
        let presets: Vec<certgate_identity::Preset> = chosen
            .identity
            .presets
            .iter()
            .map(|p| match p {
                certgate_config::Preset::Nginx => certgate_identity::Preset::Nginx,
                certgate_config::Preset::Xfcc => certgate_identity::Preset::Xfcc,
                certgate_config::Preset::Rfc9440 => certgate_identity::Preset::Rfc9440,
                certgate_config::Preset::None => certgate_identity::Preset::None,
            })
            .collect();
        let plan = certgate_identity::HeaderPlan::new(&presets, &chosen.identity.set)
            .with_context(|| format!("{}: servers `{}`.identity", path.display(), chosen.name))?;
        let auth = &chosen.client_auth;
        let mode = match auth.verify {
            certgate_config::VerifyMode::Off => InspectMode::Off,
            certgate_config::VerifyMode::OptionalNoCa => InspectMode::OptionalNoCa,
            _ => InspectMode::On,
        };
        let verifier = if mode == InspectMode::Off {
            None
        } else {
            let mut ca = Vec::new();
            if let Some(file) = &auth.ca {
                ca = certgate_pki::load_certs(file)?;
            }
            let mut trusted = Vec::new();
            for file in &auth.trusted_ca {
                trusted.extend(certgate_pki::load_certs(file)?);
            }
            let crls = certgate_pki::load_crls(&auth.crl)?;
            Some(
                certgate_pki::ChainVerifier::new(ca, trusted, crls, auth.verify_depth)
                    .with_context(|| format!("{}: server `{}`", path.display(), chosen.name))?,
            )
        };
        Ok(GatewayView {
            title: format!(
                "Identity headers (server `{}` of {}, verify: {}):",
                chosen.name,
                path.display(),
                match mode {
                    InspectMode::Off => "off",
                    InspectMode::OptionalNoCa => "optional_no_ca",
                    _ => "on/optional",
                }
            ),
            mode,
            verifier,
            plan,
        })
    }

    /// `$ssl_client_verify` for this chain, a note on what was not checked, and whether
    /// a failure is one `optional_no_ca` forwards (an untrusted issuer only).
    fn verify(
        &self,
        chain: &[rustls_pki_types::CertificateDer<'static>],
    ) -> (certgate_identity::VerifyResult, &'static str, bool) {
        use certgate_identity::VerifyResult;
        let failed = |f: certgate_pki::VerifyFailure| VerifyResult::Failed(f.reason.to_string());
        match (&self.verifier, self.mode) {
            (_, InspectMode::Off) => (
                VerifyResult::None,
                "; verify: off: the gateway asks for no certificate",
                false,
            ),
            (Some(verifier), _) => {
                match verifier.verify(chain, rustls_pki_types::UnixTime::now()) {
                    Ok(_) => (VerifyResult::Success, "", false),
                    Err(f) => (failed(f), "", f.is_untrusted_issuer_only()),
                }
            }
            (None, _) => match certgate_pki::verify::check_purpose(chain) {
                Ok(()) => (
                    VerifyResult::Success,
                    "; its chain is not verified without a CA: `certgate certs verify --ca FILE`, \
                     or -c gateway.yaml",
                    false,
                ),
                Err(f) => (
                    failed(f),
                    "; `certgate certs verify` shows every error",
                    false,
                ),
            },
        }
    }
}

fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    // The same loaders and verifier the gateway uses for `client_auth`, so the answer is
    // the one a connection with this chain would get.
    let ca = certgate_pki::load_certs(&args.ca)?;
    let chain = certgate_pki::load_certs(&args.cert)?;
    let crls = certgate_pki::load_crls(&args.crl)?;
    let verifier = certgate_pki::ChainVerifier::new(ca, Vec::new(), crls, args.depth)
        .with_context(|| format!("cannot use {}", args.ca.display()))?;
    let outcome = verifier.verify_detailed(&chain, rustls_pki_types::UnixTime::now());
    match outcome.result {
        Ok(_) => {
            println!("OK");
            Ok(())
        }
        Err(failure) => {
            // Like `openssl verify`, show every error met; the last one is what nginx (and
            // the gateway) report as FAILED:<reason>.
            if outcome.errors.len() > 1 {
                for error in &outcome.errors {
                    eprintln!(
                        "certgate: {}: error at depth {}: {}",
                        args.cert.display(),
                        error.depth,
                        error.reason
                    );
                }
            }
            // The reason is exactly what the gateway puts in X-SSL-Client-Verify: FAILED:<reason>.
            bail!(
                "{}: verification failed at depth {}: {}",
                args.cert.display(),
                failure.depth,
                failure.reason
            )
        }
    }
}
