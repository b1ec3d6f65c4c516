//! What the benchmarks that run the real binary share.

use std::process::{Child, ExitStatus};
use std::time::Duration;

/// Wait for `child`, sampling its peak resident set (kB) as it runs.
///
/// VmHWM is the peak of the process image after exec. (getrusage's
/// ru_maxrss would also count the moment between fork and exec, when the
/// child still shares the benchmark's large address space.)
pub fn wait_with_peak_rss(mut child: Child) -> (ExitStatus, u64) {
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak = 0;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for hydra-sentinel") {
            return (status, peak);
        }
        if let Some(hwm) = std::fs::read_to_string(&status_file)
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:").map(str::to_owned))
            })
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        {
            peak = peak.max(hwm);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The CPU time this thread has used (the scheduler's own count, in ns).
#[allow(dead_code)] // not every benchmark measures a thread
pub fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|text| text.split_whitespace().next()?.parse().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}
