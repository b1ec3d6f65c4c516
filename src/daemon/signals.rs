//! Unix signals into the loop's channel: SIGTERM and SIGINT become
//! [`Signal::Shutdown`], SIGHUP becomes [`Signal::Reload`].
//!
//! Must never: act on a signal itself; the loop decides what a signal means
//! at the moment it arrives (between cycles, or during one).

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

use super::Signal;

/// Install the handlers (call inside the runtime, before the loop starts,
/// so that no signal is lost to the default action) and forward them.
pub fn forward(tx: mpsc::UnboundedSender<Signal>) -> std::io::Result<()> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    tokio::spawn(async move {
        loop {
            let (name, message) = tokio::select! {
                _ = term.recv() => ("SIGTERM", Signal::Shutdown),
                _ = int.recv() => ("SIGINT", Signal::Shutdown),
                _ = hup.recv() => ("SIGHUP", Signal::Reload),
            };
            tracing::info!(signal = name, "signal received");
            if tx.send(message).is_err() {
                return;
            }
        }
    });
    Ok(())
}
