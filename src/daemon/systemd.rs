//! The systemd notification protocol, isolated and best-effort.
//!
//! Owns: `READY=1`, `STATUS=`, `RELOADING=1`, `STOPPING=1` and `WATCHDOG=1`
//! through `sd-notify`, and reading the watchdog period from
//! `WATCHDOG_USEC` (honouring `WATCHDOG_PID`).
//!
//! Must never: fail the service (every error is logged at debug level and
//! forgotten; without `NOTIFY_SOCKET` each call is a no-op), or unset the
//! environment variables (`remove_var` is unsound once threads exist).
//! Child processes that must not talk to systemd get `env_remove` on their
//! `Command` instead.
//!
//! Deciding *when* to ping the watchdog is not this file's business: see
//! the watchdog task in [`super`], which pings only on real progress.

use std::time::Duration;

use sd_notify::NotifyState;

/// What the loop tells the service manager. A seam: tests record the calls.
pub trait Notifier: Send + Sync {
    fn ready(&self);
    fn status(&self, text: &str);
    fn reloading(&self);
    fn stopping(&self);
    /// The watchdog period systemd expects pings within, if enabled.
    fn watchdog_period(&self) -> Option<Duration>;
    fn watchdog_ping(&self);
}

/// The real thing, via `$NOTIFY_SOCKET`.
#[derive(Debug, Default)]
pub struct Systemd;

impl Systemd {
    fn send(&self, states: &[NotifyState<'_>]) {
        if let Err(e) = sd_notify::notify(states) {
            tracing::debug!(error = %e, "systemd notification not delivered");
        }
    }
}

impl Notifier for Systemd {
    fn ready(&self) {
        self.send(&[NotifyState::Ready]);
    }

    fn status(&self, text: &str) {
        // One line: systemd shows STATUS= verbatim and a newline would end it.
        let line = text.replace('\n', " ");
        self.send(&[NotifyState::Status(&line)]);
    }

    fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => self.send(&[NotifyState::Reloading, now]),
            Err(_) => self.send(&[NotifyState::Reloading]),
        }
    }

    fn stopping(&self) {
        self.send(&[NotifyState::Stopping, NotifyState::Status("stopped")]);
    }

    fn watchdog_period(&self) -> Option<Duration> {
        sd_notify::watchdog_enabled().filter(|d| !d.is_zero())
    }

    fn watchdog_ping(&self) {
        self.send(&[NotifyState::Watchdog]);
    }
}
