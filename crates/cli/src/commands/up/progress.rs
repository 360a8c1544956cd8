//! Progress output of `ironedge up` and `down`: on a terminal, one live line per step with a
//! spinner, the elapsed time and what the step is doing now (the last line of a build's output);
//! otherwise plain lines, one when a step starts and one when it ends.

use std::io::{BufRead as _, BufReader, IsTerminal as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Where progress goes.
#[derive(Debug, Clone)]
pub(crate) struct Progress {
    tty: bool,
}

/// One running step; finish it with [`Step::done`] (dropping it unfinished marks it failed).
#[derive(Debug)]
pub(crate) struct Step {
    title: String,
    started: Instant,
    detail: Arc<Mutex<String>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    ticker: Option<std::thread::JoinHandle<()>>,
    tty: bool,
    finished: bool,
}

fn format_elapsed(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

/// Shortens `text` to `width` characters, ending in `…` when cut.
pub(crate) fn fit(text: &str, width: usize) -> String {
    let text = text.trim();
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(width.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// The terminal's width in columns (80 when unknown).
pub(crate) fn terminal_width() -> usize {
    rustix::termios::tcgetwinsize(std::io::stdout())
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|w| *w >= 20)
        .unwrap_or(80)
}

#[allow(clippy::print_stdout)]
fn out(line: &str) {
    println!("{line}");
}

impl Progress {
    /// Live lines when stdout is a terminal.
    pub(crate) fn new() -> Self {
        Self {
            tty: std::io::stdout().is_terminal(),
        }
    }

    /// Whether output is a terminal.
    pub(crate) fn is_tty(&self) -> bool {
        self.tty
    }

    /// Prints a plain line (between steps).
    pub(crate) fn say(&self, line: &str) {
        out(line);
    }

    /// Starts a step.
    pub(crate) fn step(&self, title: impl Into<String>) -> Step {
        let title = title.into();
        let detail = Arc::new(Mutex::new(String::new()));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let started = Instant::now();
        let ticker = if self.tty {
            let (title, detail, stop) = (title.clone(), detail.clone(), stop.clone());
            Some(std::thread::spawn(move || {
                let mut i = 0usize;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let d = detail.lock().map(|d| d.clone()).unwrap_or_default();
                    let head = format!(
                        "{} {title} ({})",
                        SPINNER[i % SPINNER.len()],
                        format_elapsed(started.elapsed())
                    );
                    let room = terminal_width().saturating_sub(head.chars().count() + 3);
                    let line = if d.is_empty() || room < 10 {
                        head
                    } else {
                        format!("{head}  {}", fit(&d, room))
                    };
                    let mut stdout = std::io::stdout().lock();
                    let _ = write!(stdout, "\r\x1b[2K{line}");
                    let _ = stdout.flush();
                    drop(stdout);
                    i += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }))
        } else {
            out(&format!("==> {title}"));
            None
        };
        Step {
            title,
            started,
            detail,
            stop,
            ticker,
            tty: self.tty,
            finished: false,
        }
    }
}

impl Step {
    /// What the step is doing now.
    pub(crate) fn detail(&self, text: &str) {
        if let Ok(mut d) = self.detail.lock() {
            text.clone_into(&mut d);
        }
    }

    fn end(&mut self, mark: &str, note: &str) {
        self.finished = true;
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        let elapsed = format_elapsed(self.started.elapsed());
        let note = if note.is_empty() {
            String::new()
        } else {
            format!(": {note}")
        };
        if self.tty {
            let mut stdout = std::io::stdout().lock();
            let _ = writeln!(stdout, "\r\x1b[2K{mark} {} ({elapsed}){note}", self.title);
        } else {
            out(&format!("    {mark} {} ({elapsed}){note}", self.title));
        }
    }

    /// Marks the step done, with an optional note.
    pub(crate) fn done(mut self, note: &str) {
        self.end("✓", note);
    }

    /// Runs `cmd` as part of this step: its output goes to `log` and its last line is shown;
    /// a failure quotes the last lines and names the log.
    pub(crate) fn run(&self, cmd: &mut Command, log: &Path) -> Result<String> {
        if let Some(dir) = log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let program = format!("{:?}", cmd.get_program());
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let stdout = child.stdout.take().context("no stdout pipe")?;
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let tail = Arc::new(Mutex::new(Vec::<String>::new()));
        let captured = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let readers = [
            spawn_reader(Box::new(stderr), tx.clone(), None),
            spawn_reader(Box::new(stdout), tx, Some(captured.clone())),
        ];
        for line in rx {
            let _ = writeln!(file, "{line}");
            self.detail(&line);
            if let Ok(mut t) = tail.lock() {
                t.push(line);
                let excess = t.len().saturating_sub(20);
                t.drain(..excess);
            }
        }
        for r in readers {
            let _ = r.join();
        }
        let status = child.wait()?;
        if !status.success() {
            let last = tail.lock().map(|t| t.join("\n")).unwrap_or_default();
            bail!(
                "{program} failed ({status}); last output:\n{last}\n(full log: {})",
                log.display()
            );
        }
        Ok(captured.lock().map(|c| c.clone()).unwrap_or_default())
    }
}

/// Reads lines from `pipe` into `tx`; stdout is also kept whole in `keep`.
fn spawn_reader(
    pipe: Box<dyn std::io::Read + Send>,
    tx: std::sync::mpsc::Sender<String>,
    keep: Option<Arc<Mutex<String>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            if let Some(k) = &keep
                && let Ok(mut k) = k.lock()
            {
                k.push_str(&line);
                k.push('\n');
            }
            if tx.send(line).is_err() {
                break;
            }
        }
    })
}

impl Drop for Step {
    fn drop(&mut self) {
        if !self.finished {
            self.end("✗", "failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_lines_are_cut_with_an_ellipsis() {
        assert_eq!(fit("  short ", 10), "short");
        assert_eq!(fit("abcdefghijkl", 6), "abcde…");
    }

    #[test]
    fn elapsed_times_read_naturally() {
        assert_eq!(format_elapsed(Duration::from_millis(2500)), "2.5s");
        assert_eq!(format_elapsed(Duration::from_secs(192)), "3m12s");
    }

    #[test]
    fn a_failing_command_reports_its_last_lines_and_log() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("x.log");
        let progress = Progress { tty: false };
        let step = progress.step("failing");
        let err = step
            .run(
                Command::new("/bin/sh").args(["-c", "echo one; echo two >&2; exit 3"]),
                &log,
            )
            .unwrap_err();
        let text = format!("{err:#}");
        assert!(text.contains("two") && text.contains("x.log"), "{text}");
        let logged = std::fs::read_to_string(&log).unwrap();
        assert!(logged.contains("one") && logged.contains("two"));
        drop(step);
        let ok = progress.step("ok");
        let stdout = ok
            .run(Command::new("/bin/echo").arg("kubeconfig"), &log)
            .unwrap();
        assert_eq!(stdout, "kubeconfig\n");
        ok.done("");
    }
}
