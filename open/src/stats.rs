//! Resource use of the child, read from `/proc/PID/stat` (proc(5)).
//!
//! Parsed here rather than with the `procfs` crate: one `read` into a buffer on the stack and
//! five numbers taken out, with no allocation and a shallow stack (procfs's parser alone took
//! a 4 KiB frame at every stats tick, which kept a watcher's stack a page deeper).

use nerve_proto::Stats;
use std::io::Read as _;
use std::time::Instant;

/// Bytes read from `/proc/PID/stat`: the line is 52 numbers and a command name of at most 64
/// bytes (TASK_COMM_LEN is 16 today), well under this.
const STAT_BUF: usize = 1024;

/// The fields of `/proc/PID/stat` a sample needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawStat {
    /// utime + stime, clock ticks.
    pub ticks: u64,
    /// Threads.
    pub threads: u64,
    /// Virtual memory size, bytes.
    pub vsize: u64,
    /// Resident set size, pages.
    pub rss_pages: u64,
}

/// Parses a `/proc/PID/stat` line. The command name (field 2) is in parentheses and may hold
/// spaces and parentheses itself, so the fields are counted from the last `)`.
pub fn parse_stat(line: &[u8]) -> Option<RawStat> {
    let close = line.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&line[close + 1..]).ok()?;
    // Field numbers as in proc(5): utime, stime, num_threads, vsize, rss. After the name the
    // first word is field 3 (state).
    const FIELDS: [usize; 5] = [14, 15, 20, 23, 24];
    let mut fields = [0u64; 5];
    let mut found = 0;
    for (i, word) in rest.split_ascii_whitespace().enumerate() {
        if let Some(slot) = FIELDS.iter().position(|&f| f == i + 3) {
            fields[slot] = word.parse().ok()?;
            found += 1;
            if found == FIELDS.len() {
                break;
            }
        }
    }
    if found < FIELDS.len() {
        return None;
    }
    Some(RawStat {
        ticks: fields[0] + fields[1],
        threads: fields[2],
        vsize: fields[3],
        rss_pages: fields[4],
    })
}

/// CPU percent of one core from `ticks` clock ticks used over `wall_secs` seconds, at
/// `ticks_per_second`; 0 over no time.
pub fn cpu_percent(ticks: u64, ticks_per_second: u64, wall_secs: f64) -> f32 {
    if wall_secs > 0.0 && ticks_per_second > 0 {
        (ticks as f64 / ticks_per_second as f64 / wall_secs * 100.0) as f32
    } else {
        0.0
    }
}

/// Samples one process; remembers the previous sample to compute CPU percent.
pub struct Sampler {
    /// `/proc/PID/stat` of the child.
    path: String,
    spawned: Instant,
    last: Option<(Instant, u64)>,
    /// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
    ticks_per_second: u64,
    /// Bytes per page (`sysconf(_SC_PAGESIZE)`).
    page_size: u64,
}

impl Sampler {
    /// A sampler for `pid`, spawned at `spawned`.
    pub fn new(pid: u32, spawned: Instant) -> Self {
        // SAFETY: sysconf has no memory effects.
        let (tps, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
        Sampler {
            path: format!("/proc/{pid}/stat"),
            spawned,
            last: None,
            ticks_per_second: u64::try_from(tps).unwrap_or(100),
            page_size: u64::try_from(page).unwrap_or(4096),
        }
    }

    /// The child's stats now, or `None` when it cannot be read (it has just exited).
    /// CPU percent is over the time since the previous sample (0 for the first sample).
    pub fn sample(&mut self) -> Option<Stats> {
        let mut buf = [0u8; STAT_BUF];
        let n = std::fs::File::open(&self.path).ok()?.read(&mut buf).ok()?;
        let stat = parse_stat(&buf[..n])?;
        Some(self.stats(stat, Instant::now()))
    }

    /// The stats of `stat` read at `now` (and `now` remembered for the next CPU percent).
    pub fn stats(&mut self, stat: RawStat, now: Instant) -> Stats {
        let cpu = match self.last {
            Some((then, before)) => cpu_percent(
                stat.ticks.saturating_sub(before),
                self.ticks_per_second,
                now.saturating_duration_since(then).as_secs_f64(),
            ),
            None => 0.0,
        };
        self.last = Some((now, stat.ticks));
        Stats {
            cpu_percent: cpu,
            rss_bytes: stat.rss_pages.saturating_mul(self.page_size),
            vms_bytes: stat.vsize,
            threads: u32::try_from(stat.threads).unwrap_or(u32::MAX),
            uptime_secs: now.saturating_duration_since(self.spawned).as_secs_f64(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A line as `/proc/PID/stat` has it, with a name holding a space and a `)`.
    const LINE: &[u8] = b"4242 (we ird) x) S 1 4242 4242 34816 4242 4194304 170 0 0 0 7 5 0 0 20 0 3 0 \
        123456 8839168 263 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n";

    #[test]
    fn parses_ticks_threads_and_memory_after_a_name_with_spaces_and_parens() {
        let stat = parse_stat(LINE).expect("a valid line");
        assert_eq!(
            stat,
            RawStat {
                ticks: 12,
                threads: 3,
                vsize: 8_839_168,
                rss_pages: 263,
            }
        );
    }

    #[test]
    fn a_cut_or_garbled_line_is_none() {
        assert_eq!(parse_stat(&LINE[..60]), None);
        assert_eq!(parse_stat(b"no parens at all"), None);
        assert_eq!(parse_stat(b"1 (x) S 1 1 1 1 1 1 1 1 1 1 x 5 0 0 20 0 3 0 1 2 3"), None);
    }

    #[test]
    fn cpu_percent_is_over_the_time_between_samples() {
        let spawned = Instant::now();
        let mut sampler = Sampler {
            path: String::new(),
            spawned,
            last: None,
            ticks_per_second: 100,
            page_size: 4096,
        };
        let at = |ticks| RawStat {
            ticks,
            threads: 1,
            vsize: 0,
            rss_pages: 2,
        };
        let first = sampler.stats(at(10), spawned + Duration::from_secs(1));
        assert_eq!(first.cpu_percent, 0.0);
        assert_eq!(first.rss_bytes, 8192);
        // 50 ticks at 100/s over 2 s: a quarter of one core.
        let second = sampler.stats(at(60), spawned + Duration::from_secs(3));
        assert_eq!(second.cpu_percent, 25.0);
        assert_eq!(second.uptime_secs, 3.0);
        assert_eq!(cpu_percent(5, 100, 0.0), 0.0);
    }

    #[test]
    fn samples_a_live_process() {
        let stats = Sampler::new(std::process::id(), Instant::now())
            .sample()
            .expect("our own /proc/PID/stat is readable");
        assert!(stats.threads >= 1, "{stats:?}");
        assert!(stats.rss_bytes > 0 && stats.vms_bytes >= stats.rss_bytes, "{stats:?}");
    }
}
