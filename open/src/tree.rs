//! A process's descendants, read from `/proc/PID/task/TID/children` (Linux 3.5+,
//! `CONFIG_PROC_CHILDREN`), and signals to a whole tree.
//!
//! The stop sequence uses this to reach descendants that left the child's process group
//! (`setsid`, double-forked daemons): `nrv-open` is their subreaper, so they stay its
//! descendants even after their parent died. (A cgroup v2 leaf per watched command would see
//! even processes that escaped the subreaper, and `cgroup.kill` would end them at once; it
//! needs a delegated subtree, which most hosts do not give an unprivileged watcher, so nrv-open
//! relies on the walk; see the crate doc.)
//!
//! A walk is a snapshot: a process forked after it is missed (the next walk finds it; the
//! stop sequence walks again until nothing is left), and a pid read here could in principle
//! be reused before it is signalled — but a descendant's pid cannot be reused before it is
//! reaped, and reaping it is ours to do.

use std::collections::BTreeSet;

/// The pids of `pid`'s children, across all of its threads (empty when it is gone).
pub fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return found;
    };
    for task in tasks.flatten() {
        let mut path = task.path();
        path.push("children");
        if let Ok(text) = std::fs::read_to_string(&path) {
            found.extend(text.split_ascii_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    found
}

/// Every descendant of `root` (children, their children, …), not `root` itself, parents
/// before their children.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut seen = BTreeSet::new();
    let mut order = Vec::new();
    let mut next = vec![root];
    while let Some(pid) = next.pop() {
        for child in children(pid) {
            if seen.insert(child) {
                order.push(child);
                next.push(child);
            }
        }
    }
    order
}

/// Sends `sig` to each of `pids`; returns how many took it.
pub fn signal_each(pids: &[u32], sig: i32) -> usize {
    pids.iter()
        // SAFETY: kill has no memory effects.
        .filter(|&&pid| unsafe { libc::kill(pid as i32, sig) } == 0)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_grandchild_that_left_the_group() {
        let mut child = std::process::Command::new("sh")
            .args(["-c", "setsid sleep 30 & echo $!; wait"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh runs");
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().expect("piped")),
            &mut line,
        )
        .expect("sh prints the pid");
        let grandchild: u32 = line.trim().parse().expect("a pid");
        let me = std::process::id();
        let all = descendants(me);
        assert!(all.contains(&child.id()), "{all:?} lacks the child {}", child.id());
        assert!(all.contains(&grandchild), "{all:?} lacks the grandchild {grandchild}");
        assert_eq!(descendants(child.id()), vec![grandchild]);
        assert_eq!(signal_each(&[grandchild], libc::SIGKILL), 1);
        let status = child.wait().expect("sh ends");
        assert!(status.success());
    }
}
