//! Background processes of `ironedge up` (hub, node): started in their own process group and
//! session-less of the terminal (Ctrl-C in the live view does not reach them), output appended to
//! a log file, identified by pid and start time so that `down` never signals a stranger.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal};

use super::state::ProcessId;

/// Starts `program args` in the background with `env`, output appended to `log`.
pub(crate) fn spawn(
    program: &Path,
    args: &[String],
    env: &[(&str, String)],
    log: &Path,
) -> Result<ProcessId> {
    use std::os::unix::process::CommandExt as _;
    if let Some(dir) = log.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    let err = out.try_clone()?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id();
    // The child is not waited for: it outlives this command, and init reaps it.
    drop(child);
    let start_time = start_time(pid).with_context(|| {
        format!(
            "{} exited at once; see {}",
            program.display(),
            log.display()
        )
    })?;
    Ok(ProcessId { pid, start_time })
}

/// The start time of `pid` from `/proc/<pid>/stat`; `None` when it does not exist or is a zombie.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state); start time is field 22.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the recorded process still runs (same pid, same start time, not a zombie).
pub(crate) fn is_running(process: ProcessId) -> bool {
    start_time(process.pid) == Some(process.start_time)
}

/// Sends SIGTERM, waits up to `grace` for the process to end, then SIGKILLs its process group.
/// Returns true when it had to kill.
pub(crate) fn stop(process: ProcessId, grace: Duration) -> Result<bool> {
    if !is_running(process) {
        return Ok(false);
    }
    let pid = Pid::from_raw(i32::try_from(process.pid)?).context("pid 0 is not a process")?;
    rustix::process::kill_process(pid, Signal::TERM)
        .with_context(|| format!("signalling pid {}", process.pid))?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !is_running(process) {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = rustix::process::kill_process_group(pid, Signal::KILL);
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(process) {
        if Instant::now() > deadline {
            bail!("pid {} survives SIGKILL", process.pid);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spawned_process_is_recognised_and_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("sleep.log");
        let p = spawn(Path::new("/bin/sleep"), &["30".into()], &[], &log).unwrap();
        assert!(is_running(p));
        let impostor = ProcessId {
            pid: p.pid,
            start_time: p.start_time + 1,
        };
        assert!(
            !is_running(impostor),
            "a different start time is another process"
        );
        assert!(
            !stop(p, Duration::from_secs(10)).unwrap(),
            "SIGTERM was enough"
        );
        assert!(!is_running(p));
    }

    #[test]
    fn a_process_ignoring_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("stubborn.log");
        let p = spawn(
            Path::new("/bin/sh"),
            &["-c".into(), "trap '' TERM; echo ready; sleep 30".into()],
            &[],
            &log,
        )
        .unwrap();
        // Wait until the trap is installed (the shell printed after it).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ready")
        {
            assert!(Instant::now() < deadline, "the shell never started");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            stop(p, Duration::from_millis(300)).unwrap(),
            "it had to be killed"
        );
        assert!(!is_running(p));
    }
}
