//! Reading `/eval/{id}/builds` one element at a time.
//!
//! For nixpkgs the array is ~100 MB and 250,000+ builds; we hand each build to
//! a callback and never hold more than one.

use std::io::Read;

use super::BuildRef;

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
///
/// Each element is parsed from a byte slice of what has been read so far,
/// which serde_json does several times faster than from a reader; an
/// element the slice ends inside (serde_json says it met the end) is parsed
/// again once more has been read, from its start. Between elements only
/// the brackets, commas and white space of the array itself are scanned.
/// Memory holds one read chunk plus at most one element.
///
/// What has been read is checked to be UTF-8 once, and the elements parsed
/// from it as text, so serde_json does not check each string again (it did
/// every key of every build: a tenth of this thread). Each build borrows
/// its strings from there; a body that is not UTF-8 is parsed from bytes,
/// as before, and fails only where a field we read is not text.
pub fn for_each_build<R, E, F>(mut reader: R, mut on_build: F) -> Result<usize, StreamError<E>>
where
    R: Read,
    E: std::error::Error + 'static,
    F: FnMut(BuildRef<'_>) -> Result<(), E>,
{
    let mut phase = Phase::Start;
    // Read straight into the buffer parsed from: `buf[..filled]` is what
    // has been read and not yet parsed.
    let mut buf: Vec<u8> = vec![0; CHUNK * 2];
    let mut filled = 0;
    let mut count = 0;
    let json_err = |count, source| StreamError::Json {
        builds_read: count,
        source,
    };
    loop {
        if buf.len() - filled < CHUNK {
            // An element longer than what is left: make room for it.
            buf.resize(filled + CHUNK, 0);
        }
        let read = loop {
            match reader.read(&mut buf[filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(json_err(count, serde_json::Error::io(e))),
            }
        };
        filled += read;
        let eof = read == 0;
        let text = utf8_prefix(&buf[..filled]);
        let mut pos = 0;
        while pos < filled {
            let byte = buf[pos];
            if byte.is_ascii_whitespace() {
                pos += 1;
                continue;
            }
            phase = match (phase, byte) {
                (Phase::Start, b'[') => Phase::BeforeElement { first: true },
                (Phase::Start, _) => {
                    return Err(json_err(count, syntax("expected an array of builds")));
                }
                (Phase::BeforeElement { first: true }, b']') => Phase::Done,
                (Phase::BeforeElement { first: false }, b']') => {
                    return Err(json_err(
                        count,
                        syntax("a comma before the closing bracket"),
                    ));
                }
                (Phase::BeforeElement { .. }, _) => {
                    let (element, length) = match text.and_then(|text| text.get(pos..)) {
                        Some(rest) => first_build(serde_json::Deserializer::from_str(rest)),
                        None => {
                            first_build(serde_json::Deserializer::from_slice(&buf[pos..filled]))
                        }
                    };
                    match element {
                        Some(Ok(build)) => {
                            pos += length;
                            count += 1;
                            on_build(build).map_err(StreamError::Callback)?;
                            phase = Phase::AfterElement;
                            continue;
                        }
                        Some(Err(e)) if !e.is_eof() || eof => return Err(json_err(count, e)),
                        // The element goes on past what has been read
                        // (`None`: nothing but white space left, which the
                        // loop skipped already; at the end it is an error
                        // below, never a panic on the ingest path).
                        Some(Err(_)) | None => break,
                    }
                }
                (Phase::AfterElement, b',') => Phase::BeforeElement { first: false },
                (Phase::AfterElement, b']') => Phase::Done,
                (Phase::AfterElement, _) => {
                    return Err(json_err(
                        count,
                        syntax("expected a comma or the closing bracket"),
                    ));
                }
                (Phase::Done, _) => {
                    return Err(json_err(
                        count,
                        syntax("trailing characters after the array"),
                    ));
                }
            };
            pos += 1;
        }
        buf.copy_within(pos..filled, 0);
        filled -= pos;
        if eof {
            return match phase {
                Phase::Done => Ok(count),
                _ => Err(json_err(
                    count,
                    serde_json::Error::io(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the array ends before its closing bracket",
                    )),
                )),
            };
        }
    }
}

/// The build at the start of `de`, and how many bytes it took.
fn first_build<'de, R: serde_json::de::Read<'de>>(
    de: serde_json::Deserializer<R>,
) -> (Option<serde_json::Result<BuildRef<'de>>>, usize) {
    let mut elements = de.into_iter::<BuildRef<'de>>();
    let build = elements.next();
    (build, elements.byte_offset())
}

/// `bytes` as text, up to a character the end of what was read cuts in
/// two (the next read completes it); `None` when they are not UTF-8.
fn utf8_prefix(bytes: &[u8]) -> Option<&str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text),
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

fn syntax(message: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(message)
}

/// Where the array's own syntax is between elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the opening bracket.
    Start,
    /// After `[` or `,`: an element (or, right after `[`, the closing bracket).
    BeforeElement { first: bool },
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing bracket: only white space may follow.
    Done,
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

    /// A reader that hands out at most `step` bytes per call.
    struct Trickle<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    fn ids(reader: impl Read) -> Result<Vec<i64>, StreamError<Refused>> {
        let mut ids = Vec::new();
        for_each_build(reader, |b| {
            ids.push(b.id);
            Ok(())
        })?;
        Ok(ids)
    }

    fn build_json(id: i64, nixname: &str) -> String {
        serde_json::json!({"id": id, "project": "nixpkgs", "jobset": "trunk", "job": "a.x86_64-linux",
            "system": "x86_64-linux", "nixname": nixname, "drvpath": "/nix/store/x", "finished": 1,
            "buildstatus": 0, "buildproducts": {"1": {"path": "]}"}}, "jobsetevals": [1, 2]})
        .to_string()
    }

    #[test]
    fn brackets_quotes_and_escapes_inside_strings_do_not_cut_an_element() {
        let names = [r#"a}b"#, r#"c]d,"#, r#"e"f"#, r#"g\"#, "h\\\"i{[", "ü ☃"];
        let body = builds_named(&names, " ,\n ");
        assert_eq!(nixnames(body.as_bytes()), names);
    }

    /// An array of builds with these nixnames, joined by `separator`.
    fn builds_named(names: &[&str], separator: &str) -> String {
        let builds: Vec<String> = (0..)
            .zip(names)
            .map(|(id, name)| build_json(id, name))
            .collect();
        format!("[{}]", builds.join(separator))
    }

    fn nixnames(reader: impl Read) -> Vec<String> {
        let mut seen = Vec::new();
        for_each_build(reader, |b| {
            seen.push(b.nixname.unwrap().into_owned());
            Ok::<_, Refused>(())
        })
        .unwrap();
        seen
    }

    #[test]
    fn a_character_cut_between_two_reads_is_read_whole() {
        let names = ["ü ☃", "日本語", "𝄞x", "é"];
        let body = builds_named(&names, ",");
        for step in 1..=9 {
            let trickle = Trickle {
                data: body.as_bytes(),
                step,
            };
            assert_eq!(nixnames(trickle), names, "read {step} bytes at a time");
        }
    }

    /// A body that is not UTF-8 loses the fast path, not the eval: bytes in
    /// a field ingest skips are skipped as before; in one it reads, they
    /// are an error.
    #[test]
    fn a_body_that_is_not_utf8_is_read_as_bytes() {
        // '·' is two bytes in UTF-8; the first alone is not UTF-8.
        let cut_dot = |json: String| -> Vec<u8> {
            let mut bytes = format!("[{json}]").into_bytes();
            let at = bytes.iter().position(|&b| b == 0xc2).unwrap();
            bytes.remove(at + 1);
            bytes
        };
        let in_a_skipped_field = build_json(1, "ok").replace(r#""path":"]}""#, r#""path":"·""#);
        assert_eq!(ids(&cut_dot(in_a_skipped_field)[..]).unwrap(), [1]);
        let err = ids(&cut_dot(build_json(1, "·"))[..]).unwrap_err();
        assert!(
            matches!(&err, StreamError::Json { builds_read: 0, source } if source.to_string().contains("unicode")),
            "{err}"
        );
    }

    #[test]
    fn an_empty_array_has_no_builds_and_broken_arrays_are_errors() {
        assert_eq!(ids(" [ ] \n".as_bytes()).unwrap(), Vec::<i64>::new());
        for bad in [
            "",
            "[",
            "[,]",
            "{}",
            "[1,]",
            "[] []",
            "]",
            &format!("[{}", build_json(1, "x")),
        ] {
            assert!(ids(bad.as_bytes()).is_err(), "accepted {bad:?}");
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        #[test]
        fn how_the_body_arrives_does_not_matter(step in 1usize..300) {
            let text = sample();
            let whole = ids(text.as_bytes()).unwrap();
            let trickled = ids(Trickle { data: text.as_bytes(), step }).unwrap();
            proptest::prop_assert_eq!(trickled, whole);
        }

        #[test]
        fn any_cut_is_an_error(cut in 0usize..6000) {
            let text = sample();
            let cut = cut % (text.trim_end().len() - 1);
            proptest::prop_assert!(ids(&text.as_bytes()[..cut]).is_err());
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
