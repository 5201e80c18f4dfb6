//! `quiver keygen --out DIR`: make the controller's minisign key pair.
//!
//! Writes `quiver.key` (mode 0600; unencrypted, because the controller signs unattended)
//! and `quiver.pub` (what endpoints pin), prints the key's fingerprint, and never
//! overwrites an existing key.

use anyhow::{Context, Result};
use quiver_catalog::KeyPair;
use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `quiver keygen`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Folder for `quiver.key` and `quiver.pub` (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: Args) -> Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let (secret, public) = (args.out.join("quiver.key"), args.out.join("quiver.pub"));
    // Check both first so a refusal never leaves half a pair behind.
    for p in [&secret, &public] {
        if p.exists() {
            anyhow::bail!(
                "{}: already exists; refusing to overwrite a key",
                p.display()
            );
        }
    }
    let keys = KeyPair::generate()?;
    keys.write(&secret, &public)?;
    println!("fingerprint: {}", keys.public.fingerprint());
    println!("public key:  {}", keys.public.to_base64());
    eprintln!(
        "wrote {} (keep it secret, mode 0600) and {} (give it to agents)",
        secret.display(),
        public.display()
    );
    Ok(ExitCode::SUCCESS)
}
