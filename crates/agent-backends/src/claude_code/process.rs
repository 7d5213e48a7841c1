//! Running the CLI as a child process in its own process group, with a wall-clock timeout and
//! cancellation that kill the whole group, and without leaving any process behind.
//!
//! The child is spawned with `process_group(0)`, so its PID is the group's ID and every
//! descendant that does not create its own session or group belongs to it. On timeout or
//! cancellation the group receives `SIGKILL` (safe `nix::sys::signal::killpg`) while the child
//! is still un-reaped (so the group ID cannot have been reused), then the child is reaped. After
//! a normal exit, leftover members of the group (background processes the CLI left running)
//! are killed too. stdout and stderr are read concurrently; a process that escaped the group
//! and keeps a pipe open cannot block the backend beyond [`PIPE_GRACE`].

use std::ffi::OsStr;
use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

/// How long pipes may stay open after the child exited (and its group was killed).
pub(crate) const PIPE_GRACE: Duration = Duration::from_secs(2);
/// How long reaping a killed child may take before the backend gives up waiting.
const REAP_GRACE: Duration = Duration::from_secs(5);

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
}

/// A child that exited on its own.
#[derive(Debug)]
pub(crate) struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
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

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
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
}

type Buffer = Arc<Mutex<Vec<u8>>>;

fn take(buffer: &Buffer) -> Vec<u8> {
    match buffer.lock() {
        Ok(mut guard) => std::mem::take(&mut *guard),
        Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
    }
}

/// Reads `pipe` to its end into `buffer` (appending as data arrives, so that an aborted reader
/// keeps what it read).
fn spawn_reader<R>(pipe: Option<R>, buffer: Buffer) -> Option<JoinHandle<()>>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let mut pipe = pipe?;
    Some(tokio::spawn(async move {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match pipe.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => match buffer.lock() {
                    Ok(mut guard) => guard.extend_from_slice(&chunk[..n]),
                    Err(poisoned) => poisoned.into_inner().extend_from_slice(&chunk[..n]),
                },
            }
        }
    }))
}

/// Sends `SIGKILL` to the process group `pgid`. Returns whether any process was signalled.
pub(crate) fn kill_group(pgid: i32) -> bool {
    if pgid <= 1 {
        return false;
    }
    match killpg(Pid::from_raw(pgid), Signal::SIGKILL) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(error) => {
            debug!(pgid, %error, "killpg failed");
            false
        }
    }
}

/// Kills the process group when dropped while armed: if the execution future is dropped
/// before the child was reaped (the caller abandoned it without cancelling), no process of the
/// group survives. Disarmed once the child has been reaped.
struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed && kill_group(self.pgid) {
            debug!(
                pgid = self.pgid,
                "killed the CLI's process group of an abandoned execution"
            );
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
        .args(invocation.args)
        .stdin(if invocation.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = invocation.cwd {
        command.current_dir(dir);
    }
    for (key, value) in invocation.env {
        command.env(OsStr::new(key), OsStr::new(value));
    }

    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let pgid = child
        .id()
        .and_then(|id| i32::try_from(id).ok())
        .unwrap_or(0);
    debug!(
        pid = pgid,
        args = invocation.args.len(),
        "claude CLI spawned"
    );
    let mut guard = GroupGuard { pgid, armed: true };

    let stdout = Buffer::default();
    let stderr = Buffer::default();
    let readers: Vec<JoinHandle<()>> = [
        spawn_reader(child.stdout.take(), stdout.clone()),
        spawn_reader(child.stderr.take(), stderr.clone()),
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
        Exited(io::Result<ExitStatus>),
        TimedOut,
        Cancelled,
    }
    let outcome = tokio::select! {
        biased;
        () = cancel.cancelled() => Outcome::Cancelled,
        status = child.wait() => Outcome::Exited(status),
        () = tokio::time::sleep(invocation.timeout) => Outcome::TimedOut,
    };

    match outcome {
        Outcome::Exited(status) => {
            guard.armed = false;
            // Leftover members of the group (background processes) are killed too.
            if kill_group(pgid) {
                debug!(pgid, "killed processes the CLI left running");
            }
            drain(readers, PIPE_GRACE).await;
            if let Some(writer) = writer {
                writer.abort();
            }
            let status = status.map_err(RunError::Wait)?;
            debug!(pid = pgid, code = exit_code(status), "claude CLI exited");
            Ok(Finished {
                status,
                stdout: take(&stdout),
                stderr: take(&stderr),
            })
        }
        Outcome::TimedOut | Outcome::Cancelled => {
            // The child is not reaped yet, so the group ID is still ours.
            if !kill_group(pgid) {
                let _ = child.start_kill();
            }
            match tokio::time::timeout(REAP_GRACE, child.wait()).await {
                Ok(Ok(status)) => {
                    guard.armed = false;
                    debug!(pid = pgid, code = exit_code(status), "claude CLI killed");
                }
                Ok(Err(error)) => debug!(pid = pgid, %error, "reaping the killed CLI failed"),
                Err(_) => debug!(pid = pgid, "the killed CLI was not reaped in time"),
            }
            drain(readers, Duration::from_millis(200)).await;
            if let Some(writer) = writer {
                writer.abort();
            }
            Err(if matches!(outcome, Outcome::TimedOut) {
                RunError::TimedOut
            } else {
                RunError::Cancelled
            })
        }
    }
}
