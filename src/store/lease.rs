//! The actor lease: one process acts on GitHub at a time.
//!
//! Owns: the `actor_lease` row. Times are the wall clock's (the caller
//! passes them), never a replayed `--now`: a lease protects real processes.
//! Must never: wait for a lease or take one that has not expired.

use rusqlite::params;

use super::{Context, Store, StoreError};

/// Who asks for the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHolder {
    /// Host, process id and command, for people.
    pub name: String,
    pub host: String,
    pub pid: u32,
}

/// Someone else holds the lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseHeld {
    pub holder: String,
    pub host: String,
    pub pid: u32,
    pub expires_at: i64,
}

impl Store {
    /// Take (or renew) the lease for `holder` until `now + ttl_secs`, unless
    /// another holder's lease has not expired: then say whose, and until when.
    pub fn acquire_lease(
        &self,
        holder: &LeaseHolder,
        now: i64,
        ttl_secs: i64,
    ) -> Result<Result<(), LeaseHeld>, StoreError> {
        // One statement, so atomic: it writes only when the lease is free,
        // expired or already ours.
        let taken = self
            .conn
            .execute(
                "INSERT INTO actor_lease (id, holder, host, pid, acquired_at, expires_at)
                 VALUES (1, ?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO UPDATE SET
                   holder = excluded.holder, host = excluded.host, pid = excluded.pid,
                   acquired_at = CASE WHEN actor_lease.holder = excluded.holder
                                      THEN actor_lease.acquired_at ELSE excluded.acquired_at END,
                   expires_at = excluded.expires_at
                 WHERE actor_lease.holder = excluded.holder OR actor_lease.expires_at <= ?4",
                params![holder.name, holder.host, holder.pid, now, now + ttl_secs],
            )
            .context("taking the actor lease")?;
        if taken == 1 {
            return Ok(Ok(()));
        }
        let held = self
            .conn
            .query_row(
                "SELECT holder, host, pid, expires_at FROM actor_lease WHERE id = 1",
                [],
                |r| {
                    Ok(LeaseHeld {
                        holder: r.get(0)?,
                        host: r.get(1)?,
                        pid: r.get(2)?,
                        expires_at: r.get(3)?,
                    })
                },
            )
            .context("reading the actor lease")?;
        Ok(Err(held))
    }

    /// Give the lease back, if `holder` has it.
    pub fn release_lease(&self, holder: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM actor_lease WHERE id = 1 AND holder = ?1",
                [holder],
            )
            .context("giving the actor lease back")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.sqlite")).unwrap();
        (dir, store)
    }

    fn holder(pid: u32, command: &str) -> LeaseHolder {
        LeaseHolder {
            name: format!("host, pid {pid}: {command}"),
            host: "host".into(),
            pid,
        }
    }

    #[test]
    fn a_second_actor_is_refused_until_the_lease_expires_or_is_given_back() {
        let (_dir, store) = store();
        let (run, once, act) = (holder(1, "run"), holder(2, "once"), holder(3, "act"));
        assert_eq!(store.acquire_lease(&run, 1000, 600).unwrap(), Ok(()));
        assert_eq!(
            store.acquire_lease(&once, 1200, 600).unwrap(),
            Err(LeaseHeld {
                holder: run.name.clone(),
                host: "host".into(),
                pid: 1,
                expires_at: 1600
            })
        );
        assert_eq!(
            store.acquire_lease(&run, 1300, 600).unwrap(),
            Ok(()),
            "the holder renews"
        );
        assert!(store.acquire_lease(&once, 1800, 600).unwrap().is_err());
        assert_eq!(
            store.acquire_lease(&once, 1901, 600).unwrap(),
            Ok(()),
            "an expired lease is taken over"
        );
        store.release_lease(&once.name).unwrap();
        assert_eq!(store.acquire_lease(&act, 1902, 600).unwrap(), Ok(()));
    }
}
