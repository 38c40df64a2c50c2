//! Builds `init/main.rs`, the init of reused sandboxes, as a static executable: it runs inside
//! sandboxes of any image, so it may not need the image's C library. Embedded in clrk by
//! `crate::reuse_init`.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let source = "init/main.rs";
    println!("cargo::rerun-if-changed={source}");
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "--crate-name",
            "clrk_init",
            "-C",
            "opt-level=2",
            "-C",
            "target-feature=+crt-static",
            "-C",
            "strip=symbols",
            "-C",
            "panic=abort",
            "-o",
        ])
        .arg(out.join("clrk-init"))
        .arg(source)
        .status()
        .expect("run rustc for the sandbox init");
    assert!(status.success(), "building {source} failed");
}
