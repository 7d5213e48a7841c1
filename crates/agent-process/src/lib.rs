//! # agent-process
//!
//! The one way this server runs a child that may start children of its own (the `claude`
//! CLI, a downstream MCP server over stdio): as the leader of its own process group, so that
//! the whole group can be ended and no grandchild outlives it.
//!
//! * [`ProcessGroup::spawn`] starts the command with `process_group(0)` (its PID is the
//!   group's ID; every descendant that does not create its own session or group belongs to
//!   it) and `kill_on_drop`.
//! * [`ProcessGroup::exited`] resolves once the leader has exited **without reaping it**
//!   (`waitid` with `WNOWAIT`, where the platform has it): until it is reaped its PID, the
//!   group's ID, cannot be reused, so the group can still be signalled safely
//!   ([`ProcessGroup::signal`], [`ProcessGroup::kill`]) — for instance to kill what the leader
//!   left running after a normal exit.
//! * [`ProcessGroup::reap`] waits for the leader and disarms the group; until then, dropping
//!   a [`ProcessGroup`] kills the whole group (`SIGKILL`), so a caller that abandons it (a
//!   dropped future, an early return) leaves nothing behind.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use agent_process::ProcessGroup;
//!
//! let mut command = tokio::process::Command::new("sh");
//! command.args(["-c", "sleep 60 & echo started"]);
//! let mut group = ProcessGroup::spawn(&mut command)?;
//! group.exited().await?; // `sh` is done; its `sleep` still runs in the group
//! group.kill(); // ends the `sleep` while the group ID is still ours
//! let status = group.reap().await?;
//! # let _ = status;
//! # Ok(())
//! # }
//! ```

use std::io;
use std::process::ExitStatus;

use nix::errno::Errno;
pub use nix::sys::signal::Signal;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use tokio::process::{Child, Command};

/// A child process leading its own process group. Dropping it before [`ProcessGroup::reap`]
/// kills the group.
#[derive(Debug)]
pub struct ProcessGroup {
    child: Child,
    pgid: i32,
    /// Until the leader is reaped, dropping kills the group.
    armed: bool,
}

impl ProcessGroup {
    /// Spawns `command` as the leader of a new process group, killed (the leader) when
    /// dropped and the whole group with it.
    pub fn spawn(command: &mut Command) -> io::Result<ProcessGroup> {
        let child = command.process_group(0).kill_on_drop(true).spawn()?;
        let pgid = child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .unwrap_or(0);
        Ok(ProcessGroup {
            child,
            pgid,
            armed: true,
        })
    }

    /// The group's ID (the leader's PID); 0 when it is unknown.
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    /// The leader, to take its pipes or kill it alone.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` to every process of the group; whether any process received it. Once
    /// the leader is reaped its ID may belong to another process: nothing is signalled then.
    pub fn signal(&self, signal: Signal) -> bool {
        self.armed && signal_group(self.pgid, signal)
    }

    /// Sends `SIGKILL` to every process of the group; whether any process was signalled.
    pub fn kill(&self) -> bool {
        self.signal(Signal::SIGKILL)
    }

    /// Resolves once the leader has exited, without reaping it where the platform allows
    /// (see the crate documentation); elsewhere the exit is only seen by reaping it.
    pub async fn exited(&mut self) -> io::Result<()> {
        exited(&mut self.child, self.pgid).await
    }

    /// Waits for the leader and reaps it; the group is disarmed once it is reaped.
    pub async fn reap(&mut self) -> io::Result<ExitStatus> {
        let status = self.child.wait().await?;
        self.armed = false;
        Ok(status)
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // `kill_on_drop` then kills and reaps the leader.
        if self.kill() {
            tracing::debug!(
                pgid = self.pgid,
                "killed the process group of a dropped child"
            );
        }
    }
}

/// Sends `signal` to the process group `pgid`; whether any process received it. IDs 0 and 1
/// (this process's own group, init) are never signalled.
fn signal_group(pgid: i32, signal: Signal) -> bool {
    if pgid <= 1 {
        return false;
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(error) => {
            tracing::debug!(pgid, %error, "killpg failed");
            false
        }
    }
}

#[cfg(any(
    target_os = "android",
    target_os = "freebsd",
    all(target_os = "linux", not(target_env = "uclibc"))
))]
async fn exited(child: &mut Child, pid: i32) -> io::Result<()> {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    if pid <= 0 {
        return child.wait().await.map(drop);
    }
    let waited = tokio::task::spawn_blocking(move || {
        loop {
            match waitid(
                Id::Pid(Pid::from_raw(pid)),
                WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT,
            ) {
                Err(Errno::EINTR) => {}
                Ok(_) => return Ok(()),
                Err(errno) => return Err(io::Error::from(errno)),
            }
        }
    })
    .await;
    match waited {
        Ok(result) => result,
        Err(join) => Err(io::Error::other(join)),
    }
}

/// Without `waitid(WNOWAIT)` the exit is only seen by reaping; callers then signal the group
/// right after.
#[cfg(not(any(
    target_os = "android",
    target_os = "freebsd",
    all(target_os = "linux", not(target_env = "uclibc"))
)))]
async fn exited(child: &mut Child, _pid: i32) -> io::Result<()> {
    child.wait().await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Whether a process with this PID exists (signal 0 checks without signalling).
    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
    }

    fn sh(script: &str) -> Command {
        let mut command = Command::new("sh");
        command
            .args(["-c", script])
            .stdout(std::process::Stdio::piped());
        command
    }

    /// The PID a script printed on its first stdout line.
    async fn first_line_pid(group: &mut ProcessGroup) -> i32 {
        use tokio::io::AsyncBufReadExt;
        let stdout = group.child_mut().stdout.take().unwrap();
        let mut line = String::new();
        tokio::io::BufReader::new(stdout)
            .read_line(&mut line)
            .await
            .unwrap();
        line.trim().parse().unwrap()
    }

    async fn gone(pid: i32) -> bool {
        for _ in 0..100 {
            if !alive(pid) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    #[tokio::test]
    async fn a_grandchild_left_running_is_killed_with_the_group() {
        let mut group = ProcessGroup::spawn(&mut sh("sleep 30 & echo $!")).unwrap();
        let grandchild = first_line_pid(&mut group).await;
        group.exited().await.unwrap();
        assert!(alive(grandchild), "the grandchild outlives its parent");
        assert!(group.kill());
        let status = group.reap().await.unwrap();
        assert!(status.success());
        assert!(gone(grandchild).await, "the grandchild was killed");
    }

    #[tokio::test]
    async fn dropping_an_unreaped_group_kills_it() {
        let mut group = ProcessGroup::spawn(&mut sh("sleep 30 & echo $!; sleep 30")).unwrap();
        let grandchild = first_line_pid(&mut group).await;
        assert!(group.pgid() > 1);
        drop(group);
        assert!(gone(grandchild).await, "the grandchild was killed on drop");
    }

    #[tokio::test]
    async fn a_reaped_group_is_not_signalled() {
        let mut group = ProcessGroup::spawn(&mut sh("exit 3")).unwrap();
        let status = group.reap().await.unwrap();
        assert_eq!(status.code(), Some(3));
        assert!(!group.kill(), "a reaped leader's ID is not ours any more");
    }
}
