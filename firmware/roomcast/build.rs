//! Build script: puts the pinned hls.js (web/package-lock.json) into
//! `$OUT_DIR/hls.min.js` for `src/web.rs` to embed, and refuses an x86 build
//! whose openh264 would silently lose its assembly for want of nasm.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::{env, fs, io};

fn main() {
    check_nasm();

    let web = Path::new(&env::var_os("CARGO_MANIFEST_DIR").unwrap()).join("web");
    for file in ["package.json", "package-lock.json"] {
        println!("cargo:rerun-if-changed=web/{file}");
    }
    for entry in fs::read_dir(&web).expect("read web/").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.ends_with(".html") || name.ends_with(".js") || name.ends_with(".css") {
            println!("cargo:rerun-if-changed=web/{name}");
        }
    }

    let src = hlsjs(&web);
    let dst = Path::new(&env::var_os("OUT_DIR").unwrap()).join("hls.min.js");
    if let Err(e) = fs::copy(&src, &dst) {
        panic!("cannot copy {} to {}: {e}", src.display(), dst.display());
    }
}

/// Path of hls.min.js: `$ROOMCAST_HLSJS`, else the npm package (installed
/// with `npm ci` from the lock file when it is not there yet).
fn hlsjs(web: &Path) -> PathBuf {
    println!("cargo:rerun-if-env-changed=ROOMCAST_HLSJS");
    if let Some(path) = env::var_os("ROOMCAST_HLSJS") {
        let path = PathBuf::from(path);
        println!("cargo:rerun-if-changed={}", path.display());
        return path;
    }
    let dist = web.join("node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed=web/node_modules/hls.js/dist/hls.min.js");
    if !dist.exists() {
        // npm's stdout goes to our stderr so that cargo never parses it.
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(web)
            .stdout(Stdio::from(io::stderr()))
            .status();
        let failure = match status {
            Ok(s) if s.success() && dist.exists() => return dist,
            Ok(s) => format!("`npm ci` failed ({s})"),
            Err(e) => format!("npm could not be run ({e})"),
        };
        panic!(
            "hls.js is missing from {} and {failure}: install Node.js and npm \
             (apt install npm) so the build can fetch the version pinned in \
             web/package-lock.json, or set ROOMCAST_HLSJS=/path/to/hls.min.js",
            web.display()
        );
    }
    dist
}

/// openh264 builds its x86 assembly only when nasm is on PATH, and without it
/// the encoder is ~3x slower with no warning; fail loudly instead.
fn check_nasm() {
    println!("cargo:rerun-if-env-changed=ROOMCAST_ALLOW_NO_NASM");
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if !matches!(arch.as_str(), "x86" | "x86_64")
        || env::var_os("ROOMCAST_ALLOW_NO_NASM").is_some_and(|v| v == "1")
    {
        return;
    }
    let found = Command::new("nasm")
        .arg("-v")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        panic!(
            "nasm not found: openh264 would silently build without its assembly and run ~3x slower; \
             install it (apt install nasm) or set ROOMCAST_ALLOW_NO_NASM=1"
        );
    }
}
