//! This process as Linux reports it under `/proc/self`: the current and peak resident set
//! (`status`), the CPU time used (`stat`), and a background thread that samples the
//! resident set while something runs.
//!
//! The sampler is a plain thread rather than a Tokio task so that it keeps its rhythm
//! however long the sandbox or a commit holds a runtime worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A field of `/proc/self/status` in KiB (`VmRSS`, `VmHWM`, ...).
fn status_kb(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.strip_prefix(field).is_some_and(|rest| rest.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// The process's resident set size now, in KiB (`VmRSS`).
pub fn rss_kb() -> Option<u64> {
    status_kb("VmRSS")
}

/// The process's peak resident set size, in KiB (`VmHWM`).
pub fn peak_rss_kb() -> Option<u64> {
    status_kb("VmHWM")
}

/// CPU time this process has used so far, all threads, user and system (`utime + stime`
/// of `/proc/self/stat`, in `USER_HZ` ticks, which Linux fixes at 100 per second).
pub fn cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name is in parentheses and may contain spaces; fields 14 and 15 (utime,
    // stime) are the 12th and 13th after it.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// KiB in MiB.
pub fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

/// One sample: when, how much, and how far the run was.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// Since the sampler started.
    pub at: Duration,
    /// `VmRSS` in KiB.
    pub rss_kb: u64,
    /// The progress counter's value when sampled (events committed).
    pub progress: u64,
}

/// Samples `VmRSS` every `every` until stopped, with the value of a progress counter.
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<Sample>>,
}

impl RssSampler {
    /// Starts sampling now (a first sample is taken at once).
    pub fn start(every: Duration, progress: Arc<AtomicU64>) -> anyhow::Result<Self> {
        anyhow::ensure!(rss_kb().is_some(), "no VmRSS in /proc/self/status");
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new().name("oneup-bench-rss".into()).spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            loop {
                if let Some(rss_kb) = rss_kb() {
                    samples.push(Sample { at: started.elapsed(), rss_kb, progress: progress.load(Ordering::Relaxed) });
                }
                if stopping.load(Ordering::Relaxed) {
                    return samples;
                }
                std::thread::park_timeout(every);
            }
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops sampling (after one last sample) and returns the samples in order.
    pub fn stop(self) -> Vec<Sample> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.thread().unpark();
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        assert!(rss_kb().is_some_and(|kb| kb > 0));
        assert!(peak_rss_kb().is_some_and(|kb| kb >= rss_kb().unwrap_or(0) / 2));
        // Spin until this process's CPU time has grown by 20 ms: on a busy machine that takes
        // longer than 20 ms of wall time, so the bound is on wall time only as a backstop.
        let before = cpu_time().expect("cpu time");
        let started = Instant::now();
        let mut x = 0u64;
        while cpu_time().expect("cpu time") < before + Duration::from_millis(20) {
            assert!(started.elapsed() < Duration::from_secs(30), "20 ms of CPU time were never counted");
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn samples_until_stopped() {
        let progress = Arc::new(AtomicU64::new(7));
        let sampler = RssSampler::start(Duration::from_millis(5), progress).expect("sampler");
        std::thread::sleep(Duration::from_millis(30));
        let samples = sampler.stop();
        assert!(samples.len() >= 2, "{samples:?}");
        assert!(samples.iter().all(|s| s.progress == 7 && s.rss_kb > 0));
        assert!(samples.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
