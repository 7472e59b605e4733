//! `certgate demo`: the zero-set-up path. Makes an ephemeral PKI in a temporary
//! directory, starts the built-in echo upstream, and runs the gateway in front of it,
//! printing copy-paste curl commands.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use certgate_config::Config;

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Address the gateway listens on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: SocketAddr,
    /// Directory for the demo PKI and config (default: a new temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
}

fn demo_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("certgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

fn demo_config(dir: &Path, listen: SocketAddr, upstream: SocketAddr) -> String {
    let d = dir.display();
    format!(
        r#"# certgate demo configuration (generated)
log:
  level: info
servers:
  - name: demo
    listen: ["{listen}"]
    tls:
      cert: {d}/server.crt
      key: {d}/server.key
    client_auth:
      verify: on
      ca: {d}/ca.crt
      verify_depth: 1
    identity:
      preset: nginx
      set:
        X-Client-CN: "$ssl_client_s_dn_cn"
    routes:
      - match: {{ path_prefix: / }}
        upstream: echo
upstreams:
  echo:
    servers: ["{upstream}"]
"#
    )
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let dir = match args.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            dir
        }
        None => demo_dir()?,
    };
    let pki = certgate_pki::issue::dev_pki(&certgate_pki::issue::DevPkiOptions::default())
        .context("cannot generate the demo PKI")?;
    certgate_pki::issue::write_dev_pki(&pki, &dir, true).context("cannot write the demo PKI")?;

    let upstream = crate::echo::spawn(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let config_path = dir.join("gateway.yaml");
    std::fs::write(&config_path, demo_config(&dir, args.listen, upstream))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    let config = Config::load(&config_path).map_err(|e| anyhow::anyhow!("{e}"))?;
    crate::init_logging(&config.log);

    let d = dir.display();
    let url = format!("https://{}/", args.listen);
    println!(
        "certgate demo: gateway on {url} -> built-in echo upstream on http://{upstream}\n\
         PKI and config in {d}\n\n\
         With the client certificate (200, the echo shows X-SSL-Client-Verify: SUCCESS and the subject):\n  \
         curl --cacert {d}/ca.crt --cert {d}/client.crt --key {d}/client.key {url}\n\n\
         Without it (400 \"No required SSL certificate was sent\", nothing reaches the upstream):\n  \
         curl --cacert {d}/ca.crt {url}\n\n\
         Press Ctrl-C to stop."
    );
    crate::run_config(config, certgate_proxy::RunOptions::default())
}
