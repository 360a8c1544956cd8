//! Running the host tools the node drives (`ip`, `nft`), with their stderr in errors.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::error::{Error, Result};

/// Runs `program args…`, feeding `stdin` when given; returns stdout.
pub async fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let line = || format!("{program} {}", args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| Error::Command {
        command: line(),
        reason: format!("{e} (is it installed? scripts/install-node-tools installs it)"),
    })?;
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes())
            .await
            .map_err(|e| Error::Command {
                command: line(),
                reason: format!("writing stdin: {e}"),
            })?;
    }
    let out = child.wait_with_output().await.map_err(|e| Error::Command {
        command: line(),
        reason: e.to_string(),
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Command {
            command: line(),
            reason: format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        })
    }
}

/// Like [`run`], but a failure is only logged: for best-effort clean-up.
pub async fn run_quietly(program: &str, args: &[&str]) {
    if let Err(e) = run(program, args, None).await {
        tracing::debug!(error = %e, "clean-up step failed (already gone?)");
    }
}
