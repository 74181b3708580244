//! Resource use of the child, read from `/proc` with the `procfs` crate.

use nerve_proto::Stats;
use std::time::Instant;

/// Samples one process; remembers the previous sample to compute CPU percent.
pub struct Sampler {
    pid: i32,
    spawned: Instant,
    last: Option<(Instant, u64)>,
}

impl Sampler {
    /// A sampler for `pid`, spawned at `spawned`.
    pub fn new(pid: u32, spawned: Instant) -> Self {
        Sampler {
            pid: pid as i32,
            spawned,
            last: None,
        }
    }

    /// The child's stats now, or `None` when it cannot be read (it has just exited).
    /// CPU percent is over the time since the previous sample (0 for the first sample).
    pub fn sample(&mut self) -> Option<Stats> {
        let stat = procfs::process::Process::new(self.pid).ok()?.stat().ok()?;
        let now = Instant::now();
        let ticks = stat.utime + stat.stime;
        let tps = procfs::ticks_per_second() as f64;
        let cpu_percent = match self.last {
            Some((then, before)) => {
                let wall = now.duration_since(then).as_secs_f64();
                if wall > 0.0 {
                    (ticks.saturating_sub(before) as f64 / tps / wall * 100.0) as f32
                } else {
                    0.0
                }
            }
            None => 0.0,
        };
        self.last = Some((now, ticks));
        Some(Stats {
            cpu_percent,
            rss_bytes: stat.rss.saturating_mul(procfs::page_size()),
            vms_bytes: stat.vsize,
            threads: stat.num_threads.max(0) as u32,
            uptime_secs: now.duration_since(self.spawned).as_secs_f64(),
        })
    }
}
