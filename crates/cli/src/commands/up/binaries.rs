//! The programs pods run on the local node: the `ironedge` binary (agent, edge hub, workload
//! proxy) and the sample modules beside it. They are copied into `<state>/bin`, a directory every
//! user can read, because some containers run as an unprivileged user (the workload-proxy
//! sidecar) and a build directory under `/root` is not reachable for them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use super::progress::Step;

/// The sample module executables the demo needs beside `ironedge`.
pub(crate) const SAMPLES: [&str; 2] = ["ironedge-tempsensor", "ironedge-filter"];

/// The source checkout: `IRONEDGE_SOURCE_DIR`, else the one this binary was built from.
pub(crate) fn source_dir() -> Result<PathBuf> {
    let candidate = std::env::var_os("IRONEDGE_SOURCE_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."),
        PathBuf::from,
    );
    let dir = candidate.canonicalize().unwrap_or(candidate);
    if !dir.join("deploy/helm/ironedge-device").is_dir() || !dir.join("scripts/k8s").is_dir() {
        bail!(
            "no ironedge source checkout at {}: `ironedge up` uses its scripts and Helm charts; \
             run it from a checkout (`cargo run --release -- up`) or set IRONEDGE_SOURCE_DIR",
            dir.display()
        );
    }
    Ok(dir)
}

/// Makes sure the sample executables beside the running `ironedge` are built from this
/// checkout: cargo (same profile and target directory) is run every time, which is a no-op when
/// they are fresh; without cargo (or without `build`), existing executables are used as they are.
pub(crate) fn ensure_samples(
    step: &Step,
    source: &Path,
    log: &Path,
    build: bool,
) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running ironedge binary")?;
    let dir = exe
        .parent()
        .context("the ironedge binary has no directory")?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from);
    let have_cargo = build
        && Command::new(&cargo)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if have_cargo {
        let profile = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("debug")
            .to_owned();
        let target = dir
            .parent()
            .context("the ironedge binary is not in a cargo target directory")?;
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(source)
            .env("CARGO_TARGET_DIR", target)
            .args(["build", "--profile", cargo_profile(&profile)]);
        for m in SAMPLES {
            cmd.args(["-p", m]);
        }
        step.run(&mut cmd, log)
            .context("building the sample modules failed")?;
    }
    for m in SAMPLES {
        if !dir.join(m).is_file() {
            bail!(
                "{} is missing and there is no cargo to build it: build the samples \
                 (`cargo build --release -p {m}`) next to the ironedge binary",
                dir.join(m).display()
            );
        }
    }
    Ok(exe)
}

/// Cargo names the `debug` directory's profile `dev`.
fn cargo_profile(dir_name: &str) -> &str {
    if dir_name == "debug" { "dev" } else { dir_name }
}

/// Copies `ironedge` and the samples into `bin` (world-readable), skipping unchanged files;
/// returns the copied `ironedge`.
pub(crate) fn install(exe: &Path, bin: &Path) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(bin).with_context(|| format!("creating {}", bin.display()))?;
    let mut dir = Some(bin);
    while let Some(d) = dir {
        // Every directory up to / must be passable for the unprivileged sidecar.
        let mode = std::fs::metadata(d)?.permissions().mode();
        if mode & 0o001 == 0 {
            bail!(
                "{} is not accessible to other users (mode {:o}); choose a --state-dir outside it",
                d.display(),
                mode & 0o777
            );
        }
        dir = d.parent();
    }
    let source_dir = exe.parent().context("no directory")?;
    let names = std::iter::once("ironedge").chain(SAMPLES);
    for name in names {
        let from = if name == "ironedge" {
            exe.to_path_buf()
        } else {
            source_dir.join(name)
        };
        let to = bin.join(name);
        if same_file_contents(&from, &to) {
            continue;
        }
        let tmp = bin.join(format!(".{name}.tmp"));
        std::fs::copy(&from, &tmp)
            .with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))?;
        std::fs::rename(&tmp, &to).with_context(|| format!("installing {}", to.display()))?;
    }
    Ok(bin.join("ironedge"))
}

/// Same size and modification time no older than the source: treated as the same build.
fn same_file_contents(from: &Path, to: &Path) -> bool {
    match (std::fs::metadata(from), std::fs::metadata(to)) {
        (Ok(a), Ok(b)) => {
            a.len() == b.len()
                && matches!((a.modified(), b.modified()), (Ok(ma), Ok(mb)) if mb >= ma)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binaries_are_copied_once_and_refreshed_when_rebuilt() {
        let root = tempfile::Builder::new().tempdir_in("/var/tmp").unwrap();
        let build = root.path().join("target/release");
        std::fs::create_dir_all(&build).unwrap();
        for n in ["ironedge", "ironedge-tempsensor", "ironedge-filter"] {
            std::fs::write(build.join(n), n).unwrap();
        }
        let bin = root.path().join("state/bin");
        let installed = install(&build.join("ironedge"), &bin).unwrap();
        assert_eq!(std::fs::read_to_string(&installed).unwrap(), "ironedge");
        assert_eq!(
            std::fs::read_to_string(bin.join("ironedge-filter")).unwrap(),
            "ironedge-filter"
        );
        std::fs::write(build.join("ironedge"), "ironedge v2").unwrap();
        install(&build.join("ironedge"), &bin).unwrap();
        assert_eq!(std::fs::read_to_string(&installed).unwrap(), "ironedge v2");
    }

    #[test]
    fn a_state_dir_others_cannot_enter_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::Builder::new().tempdir_in("/var/tmp").unwrap();
        let closed = root.path().join("closed");
        std::fs::create_dir(&closed).unwrap();
        std::fs::set_permissions(&closed, std::fs::Permissions::from_mode(0o700)).unwrap();
        let exe = root.path().join("ironedge");
        std::fs::write(&exe, "x").unwrap();
        let err = install(&exe, &closed.join("bin")).unwrap_err();
        assert!(format!("{err:#}").contains("not accessible"), "{err:#}");
    }

    #[test]
    fn the_debug_directory_is_the_dev_profile() {
        assert_eq!(cargo_profile("debug"), "dev");
        assert_eq!(cargo_profile("release"), "release");
    }
}
