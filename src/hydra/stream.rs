//! Reading `/eval/{id}/builds` one element at a time.
//!
//! For nixpkgs the array is ~100 MB and 250,000+ builds; we hand each build to
//! a callback and never hold more than one.

use std::fmt;
use std::io::Read;

use serde::de::{DeserializeSeed, Deserializer, SeqAccess, Visitor};

use super::Build;

#[derive(Debug, thiserror::Error)]
pub enum StreamError<E: std::error::Error + 'static> {
    /// The document is not a complete JSON array of builds: truncated,
    /// malformed, or followed by garbage.
    #[error("the builds array is malformed or truncated after {builds_read} builds")]
    Json {
        builds_read: usize,
        #[source]
        source: serde_json::Error,
    },
    /// The callback refused a build.
    #[error(transparent)]
    Callback(E),
}

/// Call `on_build` for each element of a JSON array of builds, in order.
/// Returns the number of builds read. Stops at the first error.
pub fn for_each_build<R, E, F>(reader: R, mut on_build: F) -> Result<usize, StreamError<E>>
where
    R: Read,
    E: std::error::Error + 'static,
    F: FnMut(Build) -> Result<(), E>,
{
    let mut de =
        serde_json::Deserializer::from_reader(std::io::BufReader::with_capacity(1 << 16, reader));
    let mut seed = BuildsSeed {
        on_build: &mut on_build,
        count: 0,
        failure: None,
    };
    let result = (&mut de).deserialize_seq(&mut seed).and_then(|()| de.end());
    if let Some(err) = seed.failure.take() {
        return Err(StreamError::Callback(err));
    }
    match result {
        Ok(()) => Ok(seed.count),
        Err(source) => Err(StreamError::Json {
            builds_read: seed.count,
            source,
        }),
    }
}

struct BuildsSeed<'f, F, E> {
    on_build: &'f mut F,
    count: usize,
    failure: Option<E>,
}

impl<'de, F, E> Visitor<'de> for &mut BuildsSeed<'_, F, E>
where
    F: FnMut(Build) -> Result<(), E>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of Hydra builds")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(build) = seq.next_element::<Build>()? {
            self.count += 1;
            if let Err(e) = (self.on_build)(build) {
                self.failure = Some(e);
                return Err(serde::de::Error::custom("stopped by the callback"));
            }
        }
        Ok(())
    }
}

impl<'de, F, E> DeserializeSeed<'de> for &mut BuildsSeed<'_, F, E>
where
    F: FnMut(Build) -> Result<(), E>,
{
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/hydra/eval-builds.json"
        ))
        .unwrap()
    }

    #[derive(Debug, thiserror::Error)]
    #[error("refused")]
    struct Refused;

    #[test]
    fn hands_over_every_build_in_order() {
        let mut ids = Vec::new();
        let n = for_each_build(sample().as_bytes(), |b| {
            ids.push(b.id);
            Ok::<_, Refused>(())
        })
        .unwrap();
        assert_eq!(n, ids.len());
        assert_eq!(ids[0], 301944121);
    }

    #[test]
    fn a_body_cut_mid_array_is_an_error_not_a_short_success() {
        let text = sample();
        for cut in [text.len() / 3, text.len() / 2, text.len() - 3] {
            let err =
                for_each_build(&text.as_bytes()[..cut], |_| Ok::<_, Refused>(())).unwrap_err();
            assert!(
                matches!(err, StreamError::Json { .. }),
                "cut at {cut}: {err}"
            );
        }
    }

    #[test]
    fn trailing_garbage_is_refused() {
        let text = format!("{}\n{{", sample());
        assert!(for_each_build(text.as_bytes(), |_| Ok::<_, Refused>(())).is_err());
    }

    #[test]
    fn a_callback_error_stops_the_stream_and_is_returned() {
        let mut seen = 0;
        let err = for_each_build(sample().as_bytes(), |_| {
            seen += 1;
            if seen == 2 { Err(Refused) } else { Ok(()) }
        })
        .unwrap_err();
        assert!(matches!(err, StreamError::Callback(Refused)));
        assert_eq!(seen, 2);
    }
}
