//! Starting and stopping container processes. Each container runs as
//! `nsenter --net=<pod netns> unshare --mount --uts sh -c <launcher> …`: the launcher bind-mounts
//! the pod's hosts and resolv.conf files and its volumes at their mount paths inside a private
//! mount namespace (nothing leaks to the host), sets the pod's host name, changes to the working
//! directory, optionally drops to the container's user with `setpriv`, and `exec`s the program.
//! Every step `exec`s, so the child's pid is the container's, and it leads its own process
//! group, which is what stop signals go to.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process_group};
use tokio::process::{Child, ChildStderr, ChildStdout, Command};

use crate::error::{Error, Result};

/// The launcher script; all data arrives as arguments, so nothing is ever quoted into it.
const LAUNCHER: &str = r#"set -e
m="$1"; shift
user=""
groups=""
while [ "$#" -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    bind) "$m" --bind "$2" "$3"; shift 3 ;;
    robind) "$m" --bind "$2" "$3"; "$m" -o remount,bind,ro "$3"; shift 3 ;;
    move) "$m" --move "$2" "$3"; shift 3 ;;
    romove) "$m" --move "$2" "$3"; "$m" -o remount,bind,ro "$3"; shift 3 ;;
    hostname) printf '%s' "$2" > /proc/sys/kernel/hostname; shift 2 ;;
    cd) cd "$2"; shift 2 ;;
    user) user="$2"; group="$3"; shift 3 ;;
    groups) groups="$2"; shift 2 ;;
    *) echo "ironedge node: unknown launch directive $1" >&2; exit 127 ;;
  esac
done
if [ -n "$user" ] && [ -n "$groups" ]; then
  exec setpriv --reuid "$user" --regid "$group" --groups "$groups" -- "$@"
elif [ -n "$user" ]; then
  exec setpriv --reuid "$user" --regid "$group" --clear-groups -- "$@"
fi
exec "$@"
"#;

/// Default PATH when neither the container nor its image sets one (Docker's).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bind mount inside the container's mount namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Host path.
    pub source: PathBuf,
    /// Path the container sees.
    pub target: PathBuf,
    /// Read-only.
    pub read_only: bool,
    /// An empty mount point outside every target: the source is bound there before any other
    /// mount and moved to `target` in turn, because an earlier mount hides the source's path
    /// (e.g. the state dir under `/tmp` and an emptyDir at `/tmp`).
    pub stage: Option<PathBuf>,
}

/// Everything needed to start one container process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// The full environment.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: Option<PathBuf>,
    /// Bind mounts, in order.
    pub mounts: Vec<Mount>,
    /// The pod's network namespace path; `None` for host-network pods.
    pub netns: Option<PathBuf>,
    /// Host name inside the pod (own UTS namespace); `None` keeps the host's.
    pub hostname: Option<String>,
    /// `(uid, gid)` to run as.
    pub user: Option<(u32, u32)>,
    /// Supplementary groups with `user` (the pod's `fsGroup` and `supplementalGroups`).
    pub groups: Vec<u32>,
}

/// The host tools containers are started with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tools {
    /// `nsenter`.
    pub nsenter: PathBuf,
    /// `unshare`.
    pub unshare: PathBuf,
    /// `sh`.
    pub sh: PathBuf,
    /// `mount`.
    pub mount: PathBuf,
    /// `setpriv`, which ties each container's life to the node's (`--pdeathsig`).
    pub setpriv: Option<PathBuf>,
}

impl Tools {
    /// Finds the tools on `PATH` (plus /usr/sbin and /sbin).
    pub fn find() -> Result<Self> {
        Ok(Self {
            nsenter: find_program("nsenter")?,
            unshare: find_program("unshare")?,
            sh: find_program("sh")?,
            mount: find_program("mount")?,
            setpriv: find_program("setpriv").ok(),
        })
    }
}

/// Absolute path of `name` on `PATH`, /usr/sbin or /sbin.
pub fn find_program(name: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| Error::Command {
            command: name.to_string(),
            reason: "not found; run scripts/install-node-tools (iproute2, nftables, util-linux)"
                .into(),
        })
}

/// The complete command line for `spec`.
pub fn command_line(tools: &Tools, spec: &LaunchSpec) -> Vec<String> {
    let s = |p: &Path| p.to_string_lossy().into_owned();
    let mut out = Vec::new();
    if let Some(setpriv) = &tools.setpriv {
        // Containers die with the node rather than outliving it unmanaged.
        out.extend([s(setpriv), "--pdeathsig".into(), "KILL".into(), "--".into()]);
    }
    if let Some(netns) = &spec.netns {
        out.extend([
            s(&tools.nsenter),
            format!("--net={}", netns.display()),
            "--".into(),
        ]);
    }
    out.extend([s(&tools.unshare), "--mount".into()]);
    if spec.hostname.is_some() {
        out.push("--uts".into());
    }
    out.extend(["--propagation".into(), "private".into(), "--".into()]);
    out.extend([
        s(&tools.sh),
        "-c".into(),
        LAUNCHER.into(),
        "ironedge-launch".into(),
        s(&tools.mount),
    ]);
    for m in &spec.mounts {
        if let Some(stage) = &m.stage {
            out.extend(["bind".into(), s(&m.source), s(stage)]);
        }
    }
    for m in &spec.mounts {
        let (kind, source) = match (&m.stage, m.read_only) {
            (Some(stage), true) => ("romove", stage),
            (Some(stage), false) => ("move", stage),
            (None, true) => ("robind", &m.source),
            (None, false) => ("bind", &m.source),
        };
        out.extend([kind.into(), s(source), s(&m.target)]);
    }
    if let Some(h) = &spec.hostname {
        out.extend(["hostname".into(), h.clone()]);
    }
    if let Some(dir) = &spec.working_dir {
        out.extend(["cd".into(), s(dir)]);
    }
    if let Some((uid, gid)) = spec.user {
        out.extend(["user".into(), uid.to_string(), gid.to_string()]);
        if !spec.groups.is_empty() {
            let groups: Vec<String> = spec.groups.iter().map(u32::to_string).collect();
            out.extend(["groups".into(), groups.join(",")]);
        }
    }
    out.push("--".into());
    out.extend(spec.argv.iter().cloned());
    out
}

/// A started container process.
#[derive(Debug)]
pub struct ContainerProcess {
    child: Child,
    pid: u32,
}

/// The process's output pipes.
#[derive(Debug)]
pub struct Pipes {
    /// stdout.
    pub stdout: Option<ChildStdout>,
    /// stderr.
    pub stderr: Option<ChildStderr>,
}

impl ContainerProcess {
    /// Starts `spec`.
    pub fn spawn(tools: &Tools, spec: &LaunchSpec) -> Result<(Self, Pipes)> {
        let line = command_line(tools, spec);
        let (program, args) = line.split_first().ok_or_else(|| Error::Command {
            command: String::new(),
            reason: "empty command line".into(),
        })?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        if !spec.env.iter().any(|(k, _)| k == "PATH") {
            cmd.env("PATH", DEFAULT_PATH);
        }
        let mut child = cmd.spawn().map_err(|e| Error::Command {
            command: spec.argv.join(" "),
            reason: e.to_string(),
        })?;
        let pid = child.id().ok_or_else(|| Error::Command {
            command: spec.argv.join(" "),
            reason: "exited before its pid was read".into(),
        })?;
        let pipes = Pipes {
            stdout: child.stdout.take(),
            stderr: child.stderr.take(),
        };
        Ok((Self { child, pid }, pipes))
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Sends `signal` to the whole process group.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid).ok().and_then(Pid::from_raw);
        if let Some(Err(e)) = pid.map(|pid| kill_process_group(pid, signal)) {
            tracing::debug!(pid = self.pid, error = %e, "signal not delivered (already gone?)");
        }
    }

    /// SIGTERM, up to `grace` for the exit, then SIGKILL; returns the exit status.
    pub async fn stop(&mut self, grace: Duration) -> std::io::Result<ExitStatus> {
        self.signal(Signal::TERM);
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => {
                // Children of the main process that ignored SIGTERM go too.
                self.signal(Signal::KILL);
                status
            }
            Err(_) => {
                self.signal(Signal::KILL);
                self.child.wait().await
            }
        }
    }
}

/// `(exit code, signal)` the way container runtimes report it: 128 + signal when killed.
pub fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (255, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tools() -> Tools {
        Tools {
            nsenter: "/usr/bin/nsenter".into(),
            unshare: "/usr/bin/unshare".into(),
            sh: "/bin/sh".into(),
            mount: "/bin/mount".into(),
            setpriv: None,
        }
    }

    #[test]
    fn command_line_passes_every_value_as_its_own_argument() {
        let spec = LaunchSpec {
            argv: vec!["/bin/echo".into(), "a b; rm -rf /".into()],
            env: Vec::new(),
            working_dir: Some("/work dir".into()),
            mounts: vec![Mount {
                source: "/s".into(),
                target: "/etc/hosts".into(),
                read_only: true,
                stage: None,
            }],
            netns: Some("/run/netns/ie-x".into()),
            hostname: Some("pod-1".into()),
            user: Some((1000, 1000)),
            groups: Vec::new(),
        };
        let line = command_line(&tools(), &spec);
        assert_eq!(
            &line[..3],
            ["/usr/bin/nsenter", "--net=/run/netns/ie-x", "--"]
        );
        let tail: Vec<&str> = line
            .iter()
            .skip_while(|a| *a != "ironedge-launch")
            .map(String::as_str)
            .collect();
        assert_eq!(
            tail,
            [
                "ironedge-launch",
                "/bin/mount",
                "robind",
                "/s",
                "/etc/hosts",
                "hostname",
                "pod-1",
                "cd",
                "/work dir",
                "user",
                "1000",
                "1000",
                "--",
                "/bin/echo",
                "a b; rm -rf /"
            ]
        );
    }

    #[test]
    fn host_network_pods_skip_nsenter_and_uts() {
        let spec = LaunchSpec {
            argv: vec!["true".into()],
            env: Vec::new(),
            working_dir: None,
            mounts: Vec::new(),
            netns: None,
            hostname: None,
            user: None,
            groups: Vec::new(),
        };
        let line = command_line(&tools(), &spec);
        assert_eq!(line[0], "/usr/bin/unshare");
        assert!(!line.contains(&"--uts".to_string()));
    }

    #[tokio::test]
    async fn launcher_runs_the_program_and_stop_reports_the_signal() {
        let tools = Tools::find().unwrap();
        let spec = LaunchSpec {
            argv: vec![
                "/bin/sh".into(),
                "-c".into(),
                "echo started; exec sleep 30".into(),
            ],
            env: vec![("X".into(), "1".into())],
            working_dir: Some("/".into()),
            mounts: Vec::new(),
            netns: None,
            hostname: None,
            user: None,
            groups: Vec::new(),
        };
        let (mut p, mut pipes) = ContainerProcess::spawn(&tools, &spec).unwrap();
        let mut out = String::new();
        use tokio::io::AsyncBufReadExt;
        tokio::io::BufReader::new(pipes.stdout.take().unwrap())
            .read_line(&mut out)
            .await
            .unwrap();
        assert_eq!(out, "started\n");
        let status = p.stop(Duration::from_secs(5)).await.unwrap();
        assert_eq!(exit_code(status), (143, Some(15)));
    }
}
