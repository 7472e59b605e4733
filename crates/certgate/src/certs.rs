//! `certgate certs …`: the openssl-recipe replacement (init, issue, p12, inspect, verify).

#[derive(clap::Args)]
pub struct CertsArgs {}

pub fn run(_args: CertsArgs) -> anyhow::Result<()> {
    anyhow::bail!("not implemented yet")
}
