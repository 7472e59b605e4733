//! The `certgate` binary: command-line parsing and wiring only; the work lives in the library crates.
#![forbid(unsafe_code)]

mod certs;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "certgate", version, about = "mTLS reverse-proxy gateway")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Certificate tooling: init, issue, p12, inspect, verify.
    Certs(certs::CertsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Certs(args)) => certs::run(args),
        None => Ok(()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("certgate: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
