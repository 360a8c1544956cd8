//! Container logs: every run of a container writes its stdout and stderr to
//! `<state>/pods/<ns>_<pod>_<uid>/logs/<container>/<restart>.log` in the CRI log format kubelet
//! uses (`<RFC 3339 time> <stream> <F|P> <text>`), and [`LogStore`] reads them back with the
//! `pods/log` options (`tailLines`, `sinceSeconds`, `sinceTime`, `timestamps`, `limitBytes`,
//! `previous`, `follow`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::Notify;

use crate::error::{Error, Result};

/// Longest line written as one record; longer lines are split into partial (`P`) records.
const MAX_RECORD: usize = 16 * 1024;

/// One parsed log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record<'a> {
    /// When the line was read.
    pub time: &'a str,
    /// `stdout` or `stderr`.
    pub stream: &'a str,
    /// Whether this record ends a line.
    pub full: bool,
    /// The text, without the line end.
    pub text: &'a str,
}

/// Parses one CRI log line.
pub fn parse_record(line: &str) -> Option<Record<'_>> {
    let mut parts = line.splitn(4, ' ');
    let time = parts.next()?;
    let stream = parts.next()?;
    let tag = parts.next()?;
    let text = parts.next().unwrap_or("");
    Some(Record {
        time,
        stream,
        full: !tag.starts_with('P'),
        text,
    })
}

/// Read options (the `pods/log` query).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    /// Keep streaming new output until the container stops.
    pub follow: bool,
    /// Read the previous run.
    pub previous: bool,
    /// Only the last N lines.
    pub tail_lines: Option<usize>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Prefix each line with its time.
    pub timestamps: bool,
    /// Stop after this many bytes.
    pub limit_bytes: Option<usize>,
}

/// Renders the records of `content` that `options` select.
pub fn render(content: &str, options: &LogOptions) -> String {
    let selected: Vec<Record<'_>> = content
        .lines()
        .filter_map(parse_record)
        .filter(|r| match options.since {
            Some(since) => r.time.parse::<Timestamp>().is_ok_and(|t| t >= since),
            None => true,
        })
        .collect();
    let skip = match options.tail_lines {
        Some(n) => {
            // Count whole lines (a line may span several partial records) from the end.
            let mut lines = 0;
            let mut start = selected.len();
            for (i, r) in selected.iter().enumerate().rev() {
                if r.full {
                    if lines == n {
                        break;
                    }
                    lines += 1;
                }
                start = i;
            }
            start
        }
        None => 0,
    };
    let mut out = String::new();
    for r in &selected[skip..] {
        out.push_str(&render_record(r, options.timestamps));
    }
    if let Some(limit) = options.limit_bytes {
        truncate_at_char(&mut out, limit);
    }
    out
}

fn render_record(r: &Record<'_>, timestamps: bool) -> String {
    let mut out = String::new();
    if timestamps {
        out.push_str(r.time);
        out.push(' ');
    }
    out.push_str(r.text);
    if r.full {
        out.push('\n');
    }
    out
}

fn truncate_at_char(s: &mut String, limit: usize) {
    if s.len() > limit {
        let mut end = limit;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}

/// Formats one record line.
fn record_line(time: Timestamp, stream: &str, full: bool, text: &[u8]) -> Vec<u8> {
    let mut line = format!("{time:.9} {stream} {} ", if full { 'F' } else { 'P' }).into_bytes();
    line.extend_from_slice(text);
    line.push(b'\n');
    line
}

/// Where one container's logs are and how readers learn about new output.
#[derive(Debug)]
struct ContainerLog {
    dir: PathBuf,
    current: u32,
    running: bool,
    notify: Arc<Notify>,
}

/// All container logs of the node, by (namespace, pod, container).
#[derive(Debug, Default)]
pub struct LogStore {
    containers: Mutex<HashMap<(String, String, String), ContainerLog>>,
}

/// What a reader needs to read one container's log.
#[derive(Debug, Clone)]
pub struct LogHandle {
    /// The file of the selected run.
    pub path: PathBuf,
    /// Whether that run is still being written.
    pub live: bool,
    /// Woken on new output and when the run ends.
    pub notify: Arc<Notify>,
    key: (String, String, String),
    run: u32,
}

impl LogStore {
    /// A new, empty store.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), ContainerLog>> {
        self.containers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts run `run` of a container: returns the file to write.
    pub fn start_run(&self, ns: &str, pod: &str, container: &str, dir: &Path, run: u32) -> PathBuf {
        let key = (ns.to_string(), pod.to_string(), container.to_string());
        let mut map = self.lock();
        let entry = map.entry(key).or_insert_with(|| ContainerLog {
            dir: dir.to_path_buf(),
            current: run,
            running: true,
            notify: Arc::new(Notify::new()),
        });
        entry.dir = dir.to_path_buf();
        entry.current = run;
        entry.running = true;
        entry.notify.notify_waiters();
        dir.join(format!("{run}.log"))
    }

    /// Marks the current run of a container as ended.
    pub fn end_run(&self, ns: &str, pod: &str, container: &str) {
        let key = (ns.to_string(), pod.to_string(), container.to_string());
        if let Some(entry) = self.lock().get_mut(&key) {
            entry.running = false;
            entry.notify.notify_waiters();
        }
    }

    /// Forgets a pod's logs (its files are removed with the pod's directory).
    pub fn remove_pod(&self, ns: &str, pod: &str) {
        let mut map = self.lock();
        map.retain(|(n, p, _), log| {
            let keep = !(n == ns && p == pod);
            if !keep {
                log.running = false;
                log.notify.notify_waiters();
            }
            keep
        });
    }

    /// The log to read for a container; `previous` selects the run before the current one.
    pub fn handle(
        &self,
        ns: &str,
        pod: &str,
        container: &str,
        previous: bool,
    ) -> Option<LogHandle> {
        let key = (ns.to_string(), pod.to_string(), container.to_string());
        let map = self.lock();
        let entry = map.get(&key)?;
        let run = if previous {
            entry.current.checked_sub(1)?
        } else {
            entry.current
        };
        Some(LogHandle {
            path: entry.dir.join(format!("{run}.log")),
            live: entry.running && !previous,
            notify: entry.notify.clone(),
            key,
            run,
        })
    }

    /// Whether the run a handle reads is still being written.
    pub fn is_live(&self, handle: &LogHandle) -> bool {
        self.lock()
            .get(&handle.key)
            .is_some_and(|e| e.running && e.current == handle.run)
    }
}

/// Copies one output stream into the log file as CRI records until it closes.
pub async fn copy_stream(
    source: impl AsyncRead + Unpin,
    stream: &'static str,
    file: Arc<tokio::sync::Mutex<tokio::fs::File>>,
    notify: Arc<Notify>,
) {
    let mut reader = BufReader::with_capacity(MAX_RECORD, source);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = read_record(&mut reader, &mut buf).await;
        match read {
            Ok(0) => return,
            Ok(_) => {
                let full = buf.last() == Some(&b'\n');
                if full {
                    buf.pop();
                }
                let line = record_line(Timestamp::now(), stream, full, &buf);
                let mut f = file.lock().await;
                if let Err(e) = f.write_all(&line).await {
                    tracing::warn!(error = %e, "writing a container log failed");
                }
                let _ = f.flush().await;
                notify.notify_waiters();
            }
            Err(e) => {
                tracing::debug!(error = %e, "container output stream ended");
                return;
            }
        }
    }
}

/// Reads at most [`MAX_RECORD`] bytes up to and including a newline.
async fn read_record<R: AsyncBufReadExt + Unpin>(
    inner: &mut R,
    out: &mut Vec<u8>,
) -> std::io::Result<usize> {
    loop {
        let available = inner.fill_buf().await?;
        if available.is_empty() {
            return Ok(out.len());
        }
        let take = available.len().min(MAX_RECORD - out.len());
        match available[..take].iter().position(|&b| b == b'\n') {
            Some(i) => {
                out.extend_from_slice(&available[..=i]);
                inner.consume(i + 1);
                return Ok(out.len());
            }
            None => {
                out.extend_from_slice(&available[..take]);
                inner.consume(take);
                if out.len() >= MAX_RECORD {
                    return Ok(out.len());
                }
            }
        }
    }
}

/// Opens (creating) a log file for appending.
pub async fn open_log(path: &Path) -> Result<tokio::fs::File> {
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent)
            .await
            .map_err(Error::io(parent))?;
    }
    tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(Error::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "2024-01-01T00:00:01.000000000Z stdout F one\n\
                       2024-01-01T00:00:02.000000000Z stderr F two\n\
                       2024-01-01T00:00:03.000000000Z stdout P thr\n\
                       2024-01-01T00:00:03.100000000Z stdout F ee\n";

    #[test]
    fn render_joins_partial_records_and_honours_options() {
        assert_eq!(render(LOG, &LogOptions::default()), "one\ntwo\nthree\n");
        let tail = LogOptions {
            tail_lines: Some(1),
            ..Default::default()
        };
        assert_eq!(render(LOG, &tail), "three\n");
        let tail2 = LogOptions {
            tail_lines: Some(2),
            ..Default::default()
        };
        assert_eq!(render(LOG, &tail2), "two\nthree\n");
        let since = LogOptions {
            since: Some("2024-01-01T00:00:02Z".parse().unwrap()),
            ..Default::default()
        };
        assert_eq!(render(LOG, &since), "two\nthree\n");
        let ts = LogOptions {
            timestamps: true,
            limit_bytes: Some(35),
            ..Default::default()
        };
        assert_eq!(render(LOG, &ts), "2024-01-01T00:00:01.000000000Z one\n");
        let zero = LogOptions {
            tail_lines: Some(0),
            ..Default::default()
        };
        assert_eq!(render(LOG, &zero), "");
    }

    #[tokio::test]
    async fn copy_stream_writes_records_and_splits_long_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("0.log");
        let file = Arc::new(tokio::sync::Mutex::new(open_log(&path).await.unwrap()));
        let long = "x".repeat(MAX_RECORD + 10);
        let input = format!("hello\n{long}\nno newline");
        copy_stream(input.as_bytes(), "stdout", file, Arc::new(Notify::new())).await;
        let content = std::fs::read_to_string(&path).unwrap();
        let records: Vec<_> = content.lines().map(|l| parse_record(l).unwrap()).collect();
        assert_eq!(records.len(), 4);
        assert_eq!((records[0].text, records[0].full), ("hello", true));
        assert!(!records[1].full && records[2].full);
        assert_eq!((records[3].text, records[3].full), ("no newline", false));
        assert_eq!(
            render(&content, &LogOptions::default()),
            format!("hello\n{long}\nno newline")
        );
    }

    #[test]
    fn store_tracks_runs_and_previous() {
        let store = LogStore::new();
        let dir = Path::new("/tmp/x");
        store.start_run("ns", "p", "c", dir, 0);
        assert!(store.handle("ns", "p", "c", true).is_none());
        store.end_run("ns", "p", "c");
        store.start_run("ns", "p", "c", dir, 1);
        let prev = store.handle("ns", "p", "c", true).unwrap();
        assert_eq!((prev.path, prev.live), (dir.join("0.log"), false));
        let cur = store.handle("ns", "p", "c", false).unwrap();
        assert!(cur.live && store.is_live(&cur));
        store.remove_pod("ns", "p");
        assert!(store.handle("ns", "p", "c", false).is_none());
    }
}
