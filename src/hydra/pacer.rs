//! The one gate every request to Hydra passes: a token bucket.
//!
//! Owns: the pace of requests to one Hydra (`[hydra] requests_per_second`,
//! `burst`), and holding every request back after Hydra (or the nginx in
//! front of it) said "slow down" or failed.
//!
//! Must never: let a request through faster than the configured pace, or wait
//! silently: while it waits it calls the progress callback at least every
//! [`BEAT_WHILE_WAITING`], so that the systemd watchdog knows that a loop that
//! is pacing itself is alive and not hung.
//!
//! Why a pace at all: hydra.nixos.org's nginx allows 2 requests per second per
//! client address with a burst of 7, *without* `nodelay` (NixOS/infra
//! `build/hydra-proxy.nix`: `limit_req_zone … rate=2r/s`, `limit_req
//! zone=hydra-server burst=7`, `limit_req_status 429`): requests above the
//! rate are held by nginx (a connection and a slot kept busy), and those
//! beyond the burst are refused with 429 and no `Retry-After`. Pacing on our
//! side keeps us under the rate so that nginx never has to hold or refuse us.
//!
//! Time is tokio's, so tests may pause it.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

/// Longest silence towards the progress callback while waiting.
pub const BEAT_WHILE_WAITING: Duration = Duration::from_secs(5);

/// hydra.nixos.org's nginx rate (`limit_req_zone … rate=2r/s`).
pub const HYDRA_NIXOS_ORG_RATE: f64 = 2.0;
/// hydra.nixos.org's nginx burst (`limit_req … burst=7`).
pub const HYDRA_NIXOS_ORG_BURST: u32 = 7;

/// How fast requests may go.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacing {
    pub requests_per_second: f64,
    /// Requests that may go back to back after a quiet time.
    pub burst: u32,
}

impl Default for Pacing {
    fn default() -> Self {
        // One a second, one at a time: half nginx's rate, so that nginx
        // never has to hold a request of ours back.
        Pacing {
            requests_per_second: 1.0,
            burst: 1,
        }
    }
}

impl Pacing {
    /// No pace at all (for a Hydra on this machine, and tests).
    pub fn unlimited() -> Pacing {
        Pacing {
            requests_per_second: f64::INFINITY,
            burst: 1,
        }
    }

    fn interval(&self) -> Duration {
        Duration::from_secs_f64(1.0 / self.requests_per_second.max(1e-9))
    }
}

/// Called while waiting, to show the wait is alive.
pub type Progress = Arc<dyn Fn() + Send + Sync>;

/// A generic cell rate algorithm (the token bucket as a single time stamp):
/// `theoretical` is when the next request would be due if requests had come
/// exactly at the pace; a request may go up to `burst - 1` intervals early.
#[derive(Debug)]
pub struct Pacer {
    pacing: Pacing,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    theoretical: Instant,
    /// Nothing goes before this (after a 429 or an error).
    hold_until: Instant,
}

impl Pacer {
    pub fn new(pacing: Pacing) -> Pacer {
        let now = Instant::now();
        Pacer {
            pacing,
            state: Mutex::new(State {
                theoretical: now,
                hold_until: now,
            }),
        }
    }

    pub fn pacing(&self) -> Pacing {
        self.pacing
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reserve the next slot; returns when it may be used.
    fn reserve(&self, now: Instant) -> Instant {
        let interval = self.pacing.interval();
        let tolerance = interval * self.pacing.burst.max(1).saturating_sub(1);
        let mut state = self.state();
        let earliest = state
            .theoretical
            .checked_sub(tolerance)
            .unwrap_or(now)
            .max(now)
            .max(state.hold_until);
        state.theoretical = state.theoretical.max(earliest) + interval;
        earliest
    }

    /// Wait for a slot, telling `progress` now and then that we are waiting.
    pub async fn wait(&self, progress: Option<&Progress>) {
        loop {
            let slot = self.reserve(Instant::now());
            sleep_beating(slot, progress).await;
            // A hold set while we slept (another request got a 429) applies
            // to us too.
            if self.state().hold_until <= Instant::now() {
                return;
            }
        }
    }

    /// Let nothing through for `delay`, and afterwards only at the pace,
    /// without a burst: Hydra asked us to slow down, or failed.
    pub fn hold_off(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut state = self.state();
        state.hold_until = state.hold_until.max(until);
        let tolerance = self.pacing.interval() * self.pacing.burst.max(1).saturating_sub(1);
        state.theoretical = state.theoretical.max(state.hold_until + tolerance);
    }
}

/// Sleep until `deadline`, calling `progress` at least every
/// [`BEAT_WHILE_WAITING`] (and once before a long sleep).
pub async fn sleep_beating(deadline: Instant, progress: Option<&Progress>) {
    loop {
        let now = Instant::now();
        if deadline <= now {
            return;
        }
        let step = (deadline - now).min(BEAT_WHILE_WAITING);
        if let Some(progress) = progress
            && step >= Duration::from_secs(1)
        {
            progress();
        }
        tokio::time::sleep(step).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    async fn times(pacer: &Pacer, n: usize) -> Vec<Duration> {
        let start = Instant::now();
        let mut out = Vec::new();
        for _ in 0..n {
            pacer.wait(None).await;
            out.push(Instant::now() - start);
        }
        out
    }

    #[tokio::test(start_paused = true)]
    async fn after_the_burst_requests_go_at_the_pace() {
        let pacer = Pacer::new(Pacing {
            requests_per_second: 2.0,
            burst: 3,
        });
        let t = times(&pacer, 6).await;
        let ms: Vec<u128> = t.iter().map(|d| d.as_millis()).collect();
        assert_eq!(ms, vec![0, 0, 0, 500, 1000, 1500]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_quiet_time_refills_the_bucket_but_never_beyond_the_burst() {
        let pacer = Pacer::new(Pacing {
            requests_per_second: 1.0,
            burst: 2,
        });
        times(&pacer, 2).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        let ms: Vec<u128> = times(&pacer, 4)
            .await
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, vec![0, 0, 1000, 2000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_hold_stops_everyone_and_resumes_without_a_burst() {
        let pacer = Pacer::new(Pacing {
            requests_per_second: 1.0,
            burst: 5,
        });
        pacer.hold_off(Duration::from_secs(30));
        let ms: Vec<u128> = times(&pacer, 3)
            .await
            .iter()
            .map(|d| d.as_millis())
            .collect();
        assert_eq!(ms, vec![30_000, 31_000, 32_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_wait_tells_the_watchdog_it_is_alive() {
        let pacer = Pacer::new(Pacing::default());
        let beats = Arc::new(AtomicUsize::new(0));
        let progress: Progress = {
            let beats = Arc::clone(&beats);
            Arc::new(move || {
                beats.fetch_add(1, Ordering::SeqCst);
            })
        };
        pacer.hold_off(Duration::from_secs(60));
        pacer.wait(Some(&progress)).await;
        let expected = (60 / BEAT_WHILE_WAITING.as_secs()) as usize;
        assert_eq!(beats.load(Ordering::SeqCst), expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_short_pacing_wait_does_not_count_as_progress() {
        let pacer = Pacer::new(Pacing {
            requests_per_second: 2.0,
            burst: 1,
        });
        let beats = Arc::new(AtomicUsize::new(0));
        let progress: Progress = {
            let beats = Arc::clone(&beats);
            Arc::new(move || {
                beats.fetch_add(1, Ordering::SeqCst);
            })
        };
        for _ in 0..4 {
            pacer.wait(Some(&progress)).await;
        }
        assert_eq!(beats.load(Ordering::SeqCst), 0);
    }
}
