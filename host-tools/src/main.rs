//! `roomcast-host`: host-side tools for roomcast boxes. See `--help`.

use anyhow::{bail, Context};
use roomcast_host::boxconfig::{self, Credentials, Session};
use roomcast_host::cli::{self, Command, USAGE};
use roomcast_host::probe::{probe, ProbeOptions};
use roomcast_host::{discover, flash, image};
use std::path::Path;
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
        Command::ImageBuild(args) => {
            let opts = image::BuildOptions::from_args(&args)?;
            let report = image::build(&opts, &mut std::io::stdout())
                .map_err(|e| anyhow::anyhow!("image build failed: {e}"))?;
            println!(
                "{}: {} MiB ({} MiB of it data), built in {:.0} s",
                report.image.display(),
                report.size >> 20,
                report.allocated >> 20,
                report.seconds
            );
        }
        Command::Flash { image, device } => {
            println!("writing {} to {}", image.display(), device.display());
            let r = flash::flash(&image, &device, &mut std::io::stderr())
                .map_err(|e| anyhow::anyhow!("flash failed: {e}"))?;
            println!(
                "verified: {} bytes, SHA-256 {} read back{} (write {:.1} s, verify {:.1} s)",
                r.bytes,
                r.sha256,
                if r.direct {
                    " from the device (O_DIRECT)"
                } else {
                    ""
                },
                r.write_s,
                r.verify_s
            );
        }
        Command::Discover { wait, json } => {
            let found = discover::discover(wait)?;
            if json {
                for f in &found {
                    println!("{}", f.to_json());
                }
            } else if found.is_empty() {
                println!(
                    "no roomcast box answered within {} s (same LAN? mDNS, UDP 5353, allowed by the firewall?)",
                    wait.as_secs()
                );
            } else {
                print!("{}", discover::table(&found));
            }
        }
        Command::ConfigGet {
            host,
            key,
            password_file,
        } => {
            let s = Session::open(host, &credentials(password_file.as_deref())?)?;
            let got = s.get();
            s.close();
            let config = got?;
            match key {
                None => println!("{}", serde_json::to_string_pretty(&config)?),
                Some(k) => match boxconfig::lookup(&config, &k) {
                    Some(serde_json::Value::String(v)) => println!("{v}"),
                    Some(v) => println!("{v}"),
                    None => bail!(boxconfig::ConfigError::NoSuchKey(k)),
                },
            }
        }
        Command::ConfigSet {
            host,
            assignments,
            password_file,
        } => {
            let mut patch = serde_json::json!({});
            for a in &assignments {
                boxconfig::add_assignment(&mut patch, a)?;
            }
            let s = Session::open(host, &credentials(password_file.as_deref())?)?;
            let put = s.put(&patch);
            s.close();
            put?;
            println!("saved and applied: {patch}");
        }
    }
    Ok(())
}

/// `ROOMCAST_TOKEN`, else the password from `--password-file` or
/// `ROOMCAST_PASSWORD`.
fn credentials(password_file: Option<&Path>) -> anyhow::Result<Credentials> {
    if let Some(t) = std::env::var("ROOMCAST_TOKEN")
        .ok()
        .filter(|t| !t.is_empty())
    {
        return Ok(Credentials::Token(t));
    }
    if let Some(f) = password_file {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?;
        let pw = text.lines().next().unwrap_or("").to_string();
        if pw.is_empty() {
            bail!("the password file {} is empty", f.display());
        }
        return Ok(Credentials::Password(pw));
    }
    if let Some(p) = std::env::var("ROOMCAST_PASSWORD")
        .ok()
        .filter(|p| !p.is_empty())
    {
        return Ok(Credentials::Password(p));
    }
    bail!("the box's API needs the admin password (ROOMCAST_PASSWORD or --password-file FILE) or an API token (ROOMCAST_TOKEN)")
}
