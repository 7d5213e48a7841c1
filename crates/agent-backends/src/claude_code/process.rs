//! Running the CLI as a child process in its own process group, with a wall-clock timeout and
//! cancellation that kill the whole group, and without leaving any process behind.
//!
//! The child leads its own process group ([`agent_process::ProcessGroup`]). On timeout or
//! cancellation the group receives `SIGKILL` while the child is still un-reaped (so the group
//! ID cannot have been reused), then the child is reaped. After a normal exit, leftover
//! members of the group (background processes the CLI left running) are killed too, again
//! before the child is reaped: the exit is observed without reaping where the platform
//! allows. stdout and stderr are read concurrently; a process that escaped the group and keeps
//! a pipe open cannot block the backend beyond [`PIPE_GRACE`].
//!
//! The child's environment is exactly [`Invocation::env`] (nothing is inherited implicitly).
//! Its output is bounded: more than [`MAX_STDOUT_BYTES`] on stdout kills the group
//! ([`RunError::OutputTooLarge`]); stderr is read to its end but only its last
//! [`STDERR_TAIL_BYTES`] are kept.

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agent_process::ProcessGroup;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::{MAX_STDOUT_BYTES, STDERR_TAIL_BYTES};

/// How long pipes may stay open after the child exited (and its group was killed).
pub(crate) const PIPE_GRACE: Duration = Duration::from_secs(2);
/// How long reaping a killed child may take before the backend gives up waiting.
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Receives each complete line of stdout (without its newline) as it arrives.
pub(crate) type LineSink = Arc<dyn Fn(&[u8]) + Send + Sync>;

/// A stdout line longer than this is not handed to the [`LineSink`] (it is still kept for the
/// final result, within [`MAX_STDOUT_BYTES`]).
pub(crate) const MAX_STREAM_LINE_BYTES: usize = 1024 * 1024;

/// One invocation of the CLI.
pub(crate) struct Invocation<'a> {
    pub program: &'a Path,
    pub args: &'a [String],
    /// `None`: the server process's CWD.
    pub cwd: Option<&'a Path>,
    /// Written to a piped stdin which is then closed; `None`: a null stdin.
    pub stdin: Option<&'a [u8]>,
    pub env: &'a [(String, String)],
    pub timeout: Duration,
    /// Gets stdout line by line while the CLI runs (the stream-json output of native mode).
    pub on_stdout_line: Option<LineSink>,
}

/// A child that exited on its own.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr.
    pub stderr: Vec<u8>,
    /// Whether earlier stderr was discarded.
    pub stderr_cut: bool,
}

impl Finished {
    /// The exit code, or minus the signal number for a child killed by a signal (as Python's
    /// `returncode` reports it).
    pub fn code(&self) -> i32 {
        exit_code(self.status)
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// The kept stderr, marked when its beginning was discarded.
    pub fn stderr_text(&self) -> String {
        let tail = String::from_utf8_lossy(&self.stderr);
        if self.stderr_cut {
            format!("[...] {}", tail.trim_start())
        } else {
            tail.into_owned()
        }
    }
}

pub(crate) fn exit_code(status: ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .or_else(|| status.signal().map(|s| -s))
        .unwrap_or(-1)
}

#[derive(Debug)]
pub(crate) enum RunError {
    /// The process could not be started.
    Spawn(io::Error),
    /// Waiting for the child failed.
    Wait(io::Error),
    TimedOut,
    Cancelled,
    /// stdout exceeded [`MAX_STDOUT_BYTES`]; the process group was killed.
    OutputTooLarge,
}

/// What a reader kept of one pipe.
#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    /// Bytes dropped from the front (stderr) or beyond the cap (stdout).
    cut: bool,
}

type Buffer = Arc<Mutex<Captured>>;

fn with<T>(buffer: &Buffer, f: impl FnOnce(&mut Captured) -> T) -> T {
    match buffer.lock() {
        Ok(mut guard) => f(&mut guard),
        Err(poisoned) => f(&mut poisoned.into_inner()),
    }
}

/// How a reader bounds what it keeps.
#[derive(Clone, Copy)]
enum Bound {
    /// Keep at most this many bytes; one more byte stops reading and fires the overflow token.
    Cap(usize),
    /// Read everything, keep only the last this many bytes.
    Tail(usize),
}

/// Reads `pipe` to its end into `buffer` (appending as data arrives, so that an aborted reader
/// keeps what it read), within `bound`.
fn spawn_reader<R>(
    pipe: Option<R>,
    buffer: Buffer,
    bound: Bound,
    overflow: CancellationToken,
    on_line: Option<LineSink>,
) -> Option<JoinHandle<()>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut pipe = pipe?;
    Some(tokio::spawn(async move {
        let mut chunk = vec![0u8; 16 * 1024];
        let mut lines = on_line.map(Lines::new);
        loop {
            let n = match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if let Some(lines) = &mut lines {
                lines.feed(&chunk[..n]);
            }
            let full = with(&buffer, |captured| match bound {
                Bound::Cap(cap) => {
                    if captured.bytes.len() + n > cap {
                        captured.cut = true;
                        captured.bytes = Vec::new();
                        true
                    } else {
                        captured.bytes.extend_from_slice(&chunk[..n]);
                        false
                    }
                }
                Bound::Tail(keep) => {
                    captured.bytes.extend_from_slice(&chunk[..n]);
                    if captured.bytes.len() > keep {
                        let excess = captured.bytes.len() - keep;
                        captured.bytes.drain(..excess);
                        captured.cut = true;
                    }
                    false
                }
            });
            if full {
                overflow.cancel();
                break;
            }
        }
    }))
}

/// Splits a byte stream into lines for a [`LineSink`], holding at most one partial line of
/// [`MAX_STREAM_LINE_BYTES`]; a longer line is skipped to its end.
struct Lines {
    sink: LineSink,
    partial: Vec<u8>,
    skipping: bool,
}

impl Lines {
    fn new(sink: LineSink) -> Self {
        Self {
            sink,
            partial: Vec::new(),
            skipping: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        while let Some(end) = bytes.iter().position(|b| *b == b'\n') {
            if !self.skipping {
                if self.partial.is_empty() {
                    (self.sink)(&bytes[..end]);
                } else {
                    self.partial.extend_from_slice(&bytes[..end]);
                    (self.sink)(&self.partial);
                }
            }
            self.partial.clear();
            self.skipping = false;
            bytes = &bytes[end + 1..];
        }
        if self.skipping {
            return;
        }
        if self.partial.len() + bytes.len() > MAX_STREAM_LINE_BYTES {
            self.partial = Vec::new();
            self.skipping = true;
        } else {
            self.partial.extend_from_slice(bytes);
        }
    }
}

/// Waits for the readers, at most `grace`; readers still running then are aborted.
async fn drain(readers: Vec<JoinHandle<()>>, grace: Duration) {
    let deadline = tokio::time::Instant::now() + grace;
    for mut reader in readers {
        if tokio::time::timeout_at(deadline, &mut reader)
            .await
            .is_err()
        {
            debug!("a CLI output pipe stayed open after the process group was killed");
            reader.abort();
        }
    }
}

/// Runs the invocation to completion, timeout or cancellation.
pub(crate) async fn run(
    invocation: &Invocation<'_>,
    cancel: &CancellationToken,
) -> Result<Finished, RunError> {
    let mut command = Command::new(invocation.program);
    command
        .env_clear()
        .envs(
            invocation
                .env
                .iter()
                .map(|(k, v)| (OsStr::new(k), OsStr::new(v))),
        )
        .args(invocation.args)
        .stdin(if invocation.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(dir) = invocation.cwd {
        command.current_dir(dir);
    }

    // Until it is reaped, dropping the group (the caller abandoned this future) kills it.
    let mut group = ProcessGroup::spawn(&mut command).map_err(RunError::Spawn)?;
    let pgid = group.pgid();
    debug!(
        pid = pgid,
        args = invocation.args.len(),
        "claude CLI spawned"
    );
    let child = group.child_mut();

    let stdout = Buffer::default();
    let stderr = Buffer::default();
    let overflow = CancellationToken::new();
    let readers: Vec<JoinHandle<()>> = [
        spawn_reader(
            child.stdout.take(),
            stdout.clone(),
            Bound::Cap(MAX_STDOUT_BYTES),
            overflow.clone(),
            invocation.on_stdout_line.clone(),
        ),
        spawn_reader(
            child.stderr.take(),
            stderr.clone(),
            Bound::Tail(STDERR_TAIL_BYTES),
            overflow.clone(),
            None,
        ),
    ]
    .into_iter()
    .flatten()
    .collect();
    let writer = match (invocation.stdin, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => {
            let bytes = bytes.to_vec();
            Some(tokio::spawn(async move {
                // A child that exits without reading its input closes the pipe: not an error.
                if let Err(error) = pipe.write_all(&bytes).await {
                    debug!(%error, "writing the prompt to the CLI's stdin failed");
                }
                let _ = pipe.shutdown().await;
            }))
        }
        _ => None,
    };

    enum Outcome {
        Exited(io::Result<()>),
        TimedOut,
        Cancelled,
        OutputTooLarge,
    }
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Outcome::Cancelled,
        () = overflow.cancelled() => Outcome::OutputTooLarge,
        exit = group.exited() => Outcome::Exited(exit),
        () = tokio::time::sleep(invocation.timeout) => Outcome::TimedOut,
    };

    // Every path signals the group while the child is not reaped yet (an exited child is a
    // zombie until then), so the group ID is still ours; then the child is reaped.
    let exited_alone = matches!(outcome, Outcome::Exited(Ok(())));
    if group.kill() {
        if exited_alone {
            debug!(pgid, "killed processes the CLI left running");
        }
    } else if !exited_alone {
        let _ = group.child_mut().start_kill();
    }
    let status = match tokio::time::timeout(REAP_GRACE, group.reap()).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => {
            debug!(pid = pgid, %error, "reaping the CLI failed");
            Err(error)
        }
        Err(_) => {
            debug!(pid = pgid, "the CLI was not reaped in time");
            Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the CLI was not reaped in time",
            ))
        }
    };
    drain(
        readers,
        if exited_alone {
            PIPE_GRACE
        } else {
            Duration::from_millis(200)
        },
    )
    .await;
    if let Some(writer) = writer {
        writer.abort();
    }
    // Output beyond the cap wins over how the process ended: its result is incomplete.
    if overflow.is_cancelled() {
        debug!(
            pid = pgid,
            "the CLI exceeded the stdout limit; its group was killed"
        );
        return Err(RunError::OutputTooLarge);
    }
    match outcome {
        Outcome::Exited(Ok(())) => {
            let status = status.map_err(RunError::Wait)?;
            debug!(pid = pgid, code = exit_code(status), "claude CLI exited");
            let stdout = with(&stdout, std::mem::take);
            let stderr = with(&stderr, std::mem::take);
            Ok(Finished {
                status,
                stdout: stdout.bytes,
                stderr: stderr.bytes,
                stderr_cut: stderr.cut,
            })
        }
        Outcome::Exited(Err(error)) => Err(RunError::Wait(error)),
        Outcome::TimedOut => Err(RunError::TimedOut),
        Outcome::Cancelled => Err(RunError::Cancelled),
        Outcome::OutputTooLarge => Err(RunError::OutputTooLarge),
    }
}

#[cfg(test)]
mod lines_tests {
    use super::*;

    fn collect(chunks: &[&[u8]]) -> Vec<String> {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink: LineSink = {
            let seen = Arc::clone(&seen);
            Arc::new(move |line: &[u8]| {
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(line).into_owned());
            })
        };
        let mut lines = Lines::new(sink);
        for chunk in chunks {
            lines.feed(chunk);
        }
        seen.lock().unwrap().clone()
    }

    #[test]
    fn lines_are_whole_whatever_the_chunks() {
        assert_eq!(
            collect(&[b"a\nb", b"c\n\nd", b"e\n", b"tail"]),
            ["a", "bc", "", "de"]
        );
    }

    #[test]
    fn an_overlong_line_is_skipped_to_its_end() {
        let long = vec![b'x'; MAX_STREAM_LINE_BYTES + 1];
        assert_eq!(
            collect(&[b"first\nxx", &long, b"still long\nnext\n"]),
            ["first", "next"]
        );
    }
}
