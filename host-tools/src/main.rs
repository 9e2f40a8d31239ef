//! `roomcast-host`: host-side tools for roomcast boxes. See `--help`.

use roomcast_host::cli::{self, Command, USAGE};
use roomcast_host::probe::{probe, ProbeOptions};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cmd = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("roomcast-host: {e}");
            return ExitCode::from(2);
        }
    };
    match run(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line. The error messages already include their causes, so
            // the chain is not printed again.
            eprintln!("roomcast-host: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cmd: Command) -> anyhow::Result<()> {
    match cmd {
        Command::Help => println!("{USAGE}"),
        Command::Version => println!("roomcast-host {}", env!("CARGO_PKG_VERSION")),
        Command::Probe { url, watch } => {
            println!("probing {url} for {} s", watch.as_secs());
            let mut opts = ProbeOptions::new(url, watch);
            // The box's admin API needs a token (see its README, "Access").
            opts.token = std::env::var("ROOMCAST_TOKEN").ok();
            let mut stdout = std::io::stdout().lock();
            probe(&opts, &mut stdout).map_err(|e| anyhow::anyhow!("probe failed: {e}"))?;
        }
    }
    Ok(())
}
