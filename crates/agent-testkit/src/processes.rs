//! Whether processes and process groups are gone, with checks that work on Linux and macOS:
//! `kill(pid, 0)` and the POSIX `ps` (`ps -A -o pid=,ppid=,pgid=,stat=`), never `/proc`.
//!
//! A zombie counts as gone: a process whose parent died is reparented, and whether its new
//! parent reaps it promptly (an init that does not, in a container) is not the code under
//! test's doing. A check that cannot be made (no `ps`, output it cannot read) panics: it never
//! passes by default. ([`peak_rss`], a memory figure rather than a process check, reads
//! Linux's `/proc/self/status`.)

use std::process::Command;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;

/// One row of the process table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    /// `ps`'s state column (`S`, `R+`, `Z`, …).
    pub stat: String,
}

impl Process {
    /// A zombie (exited, not reaped yet) or, on Linux, a dead task (`X`).
    pub fn is_zombie(&self) -> bool {
        self.stat.starts_with(['Z', 'X'])
    }
}

/// Runs `ps` with `args` and returns its stdout.
///
/// # Panics
/// When `ps` cannot be run: the check cannot be made.
fn ps(args: &[&str]) -> String {
    let output = Command::new("ps")
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ps {}` to check processes: {e}", args.join(" ")));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Parses `pid ppid pgid stat` rows.
///
/// # Panics
/// On a row that does not have that shape.
pub fn parse_table(text: &str) -> Vec<Process> {
    text.lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let number = |i: usize| fields.get(i).and_then(|f| f.parse::<i32>().ok());
            match (number(0), number(1), number(2), fields.get(3)) {
                (Some(pid), Some(ppid), Some(pgid), Some(stat)) => Process {
                    pid,
                    ppid,
                    pgid,
                    stat: (*stat).to_owned(),
                },
                _ => panic!("unexpected `ps` row: {line:?}"),
            }
        })
        .collect()
}

/// Every process of the machine (that this user may see).
///
/// # Panics
/// When `ps` cannot be run or lists nothing (it always lists at least itself).
pub fn table() -> Vec<Process> {
    let table = parse_table(&ps(&["-A", "-o", "pid=,ppid=,pgid=,stat="]));
    assert!(
        !table.is_empty(),
        "`ps -A` listed no process: the process table cannot be read"
    );
    table
}

/// Whether `pid` is gone: `kill(pid, 0)` fails with `ESRCH`, or `ps` shows a zombie (a
/// zombie still answers `kill`) or no longer lists it.
///
/// # Panics
/// When `kill` fails otherwise than `ESRCH` or `EPERM`, or `ps` cannot be run.
pub fn is_gone(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => return true,
        Ok(()) | Err(Errno::EPERM) => {}
        Err(e) => panic!("kill({pid}, 0) failed: {e}"),
    }
    let stat = ps(&["-o", "stat=", "-p", &pid.to_string()]);
    let stat = stat.trim();
    stat.is_empty() || stat.starts_with(['Z', 'X'])
}

/// The live (not zombie) members of process group `pgid`.
pub fn live_group_members(pgid: i32) -> Vec<i32> {
    table()
        .into_iter()
        .filter(|p| p.pgid == pgid && !p.is_zombie())
        .map(|p| p.pid)
        .collect()
}

/// How long a process that was killed may take to be gone on a loaded machine.
pub const GONE_WITHIN: Duration = Duration::from_secs(10);

/// Waits until every pid in `pids` is gone, polling without blocking the runtime.
///
/// # Panics
/// When `pids` is empty (nothing would be checked), or some are still alive after `within`.
pub async fn wait_until_gone(pids: &[i32], within: Duration) {
    assert!(!pids.is_empty(), "no process to check");
    let alive = || pids.iter().copied().filter(|p| !is_gone(*p)).collect();
    wait_until_none_alive(alive, within, "processes").await;
}

/// Waits until process group `pgid` has no live member.
///
/// # Panics
/// When some are still alive after `within`.
pub async fn wait_until_group_gone(pgid: i32, within: Duration) {
    let alive = || live_group_members(pgid);
    wait_until_none_alive(alive, within, &format!("process group {pgid}")).await;
}

/// Polls `alive` every 50 ms until it lists nothing; panics naming `what` after `within`.
async fn wait_until_none_alive(alive: impl Fn() -> Vec<i32>, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    loop {
        let left = alive();
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what} left behind after {within:?}: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The peak resident memory of this process since it started (`exec`), in bytes.
///
/// Linux: `VmHWM` of `/proc/self/status`, because `getrusage`'s `ru_maxrss` there keeps the
/// peak of the image the process replaced (cargo's, tens of MiB), which would hide a test's own
/// growth. Elsewhere (macOS): `getrusage`'s `ru_maxrss`, in bytes there.
///
/// # Panics
/// When the figure cannot be read.
pub fn peak_rss() -> u64 {
    #[cfg(target_os = "linux")]
    {
        let status = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_else(|e| panic!("cannot read /proc/self/status: {e}"));
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no VmHWM in /proc/self/status"));
        kib * 1024
    }
    #[cfg(not(target_os = "linux"))]
    {
        use nix::sys::resource::{UsageWho, getrusage};
        let usage =
            getrusage(UsageWho::RUSAGE_SELF).unwrap_or_else(|e| panic!("getrusage failed: {e}"));
        u64::try_from(usage.max_rss()).unwrap_or_else(|_| panic!("negative ru_maxrss"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_lists_this_process_in_its_group() {
        let me = i32::try_from(std::process::id()).unwrap();
        let table = table();
        let row = table.iter().find(|p| p.pid == me).expect("this process");
        assert!(!row.is_zombie(), "{row:?}");
        assert!(live_group_members(row.pgid).contains(&me));
        assert!(!is_gone(me));
    }

    #[tokio::test]
    async fn an_exited_child_is_gone_zombie_or_reaped() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "exit 0"])
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        // Not reaped yet: a zombie, which answers `kill(pid, 0)` but counts as gone.
        wait_until_gone(&[pid], GONE_WITHIN).await;
        child.wait().unwrap();
        assert!(is_gone(pid));
    }

    #[tokio::test]
    #[should_panic(expected = "processes left behind")]
    async fn a_live_child_is_not_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = i32::try_from(child.id()).unwrap();
        let check = tokio::spawn(async move {
            wait_until_gone(&[pid], Duration::from_millis(300)).await;
        })
        .await;
        let _ = child.kill();
        let _ = child.wait();
        if let Err(e) = check {
            std::panic::resume_unwind(e.into_panic());
        }
    }

    #[test]
    #[should_panic(expected = "unexpected `ps` row")]
    fn an_unreadable_table_fails() {
        parse_table("  12  1  12  S\nPID PPID PGID STAT\n");
    }

    #[test]
    fn peak_rss_is_measured() {
        let before = peak_rss();
        assert!(before > 0);
        let block = vec![1_u8; 64 * 1024 * 1024];
        std::hint::black_box(&block);
        let after = peak_rss();
        assert!(after >= before + 32 * 1024 * 1024, "{before} -> {after}");
    }
}
