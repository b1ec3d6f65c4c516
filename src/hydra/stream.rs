//! Reading `/eval/{id}/builds` one element at a time.
//!
//! For nixpkgs the array is ~100 MB and 250,000+ builds; we hand each build to
//! a callback and never hold more than one.

use std::io::Read;

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
///
/// The array is cut into elements by a small scanner that only tracks
/// nesting and strings; each element is then parsed from a byte slice,
/// which serde_json does several times faster than from a reader. Memory
/// holds one read chunk plus at most one element.
pub fn for_each_build<R, E, F>(mut reader: R, mut on_build: F) -> Result<usize, StreamError<E>>
where
    R: Read,
    E: std::error::Error + 'static,
    F: FnMut(Build) -> Result<(), E>,
{
    let mut splitter = Splitter::default();
    let mut buf: Vec<u8> = Vec::with_capacity(CHUNK * 2);
    let mut count = 0;
    let json_err = |count, source| StreamError::Json {
        builds_read: count,
        source,
    };
    let mut chunk = vec![0u8; CHUNK];
    loop {
        let read = loop {
            match reader.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(json_err(count, serde_json::Error::io(e))),
            }
        };
        buf.extend_from_slice(&chunk[..read]);
        let eof = read == 0;
        let mut consumed = 0;
        while let Some(range) = splitter
            .next(&buf, &mut consumed)
            .map_err(|e| json_err(count, e))?
        {
            let build: Build =
                serde_json::from_slice(&buf[range]).map_err(|e| json_err(count, e))?;
            count += 1;
            on_build(build).map_err(StreamError::Callback)?;
        }
        buf.drain(..consumed);
        splitter.rebase(consumed);
        if eof {
            return match splitter.phase {
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

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

fn syntax(message: &str) -> serde_json::Error {
    <serde_json::Error as serde::de::Error>::custom(message)
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the opening bracket.
    #[default]
    Start,
    /// After `[` or `,`: an element (or, right after `[`, the closing bracket).
    BeforeElement { first: bool },
    /// Inside an element that began at `start` (an offset in the buffer).
    InElement {
        start: usize,
        depth: u32,
        in_string: bool,
        escaped: bool,
    },
    /// After an element: `,` or `]`.
    AfterElement,
    /// After the closing bracket: only white space may follow.
    Done,
}

/// Finds the elements of a top-level JSON array in a growing buffer. It
/// checks only what it must to find element boundaries; each element's own
/// syntax is serde_json's business.
#[derive(Debug, Default)]
struct Splitter {
    phase: Phase,
    /// Where scanning resumes, as an offset in the buffer.
    pos: usize,
}

impl Splitter {
    /// The buffer lost its first `consumed` bytes.
    fn rebase(&mut self, consumed: usize) {
        self.pos -= consumed;
        if let Phase::InElement { start, .. } = &mut self.phase {
            *start -= consumed;
        }
    }

    /// Scan on; returns the byte range of the next complete element, or None
    /// when the buffer is exhausted. `consumed` is raised past everything no
    /// longer needed (never into an unfinished element).
    fn next(
        &mut self,
        buf: &[u8],
        consumed: &mut usize,
    ) -> Result<Option<std::ops::Range<usize>>, serde_json::Error> {
        while self.pos < buf.len() {
            let byte = buf[self.pos];
            match &mut self.phase {
                Phase::Start => {
                    match byte {
                        b'[' => self.phase = Phase::BeforeElement { first: true },
                        b if b.is_ascii_whitespace() => {}
                        _ => return Err(syntax("expected an array of builds")),
                    }
                    self.pos += 1;
                    *consumed = self.pos;
                }
                Phase::BeforeElement { first } => match byte {
                    b if b.is_ascii_whitespace() => {
                        self.pos += 1;
                        *consumed = self.pos;
                    }
                    b']' if *first => {
                        self.pos += 1;
                        *consumed = self.pos;
                        self.phase = Phase::Done;
                    }
                    b']' => return Err(syntax("a comma before the closing bracket")),
                    _ => {
                        self.phase = Phase::InElement {
                            start: self.pos,
                            depth: 0,
                            in_string: false,
                            escaped: false,
                        }
                    }
                },
                Phase::InElement {
                    start,
                    depth,
                    in_string,
                    escaped,
                } => {
                    if *escaped {
                        *escaped = false;
                        self.pos += 1;
                        continue;
                    }
                    if *in_string {
                        // Jump to the next quote or backslash.
                        match memchr::memchr2(b'"', b'\\', &buf[self.pos..]) {
                            None => self.pos = buf.len(),
                            Some(i) => {
                                if buf[self.pos + i] == b'\\' {
                                    *escaped = true;
                                } else {
                                    *in_string = false;
                                }
                                self.pos += i + 1;
                            }
                        }
                        continue;
                    }
                    let element_end = match byte {
                        b'"' => {
                            *in_string = true;
                            None
                        }
                        b'{' | b'[' => {
                            *depth += 1;
                            None
                        }
                        b'}' | b']' if *depth == 0 && byte == b']' => {
                            // A scalar element right before the closing bracket.
                            Some(self.pos)
                        }
                        b'}' | b']' if *depth == 0 => return Err(syntax("unbalanced brackets")),
                        b'}' | b']' => {
                            *depth -= 1;
                            (*depth == 0).then_some(self.pos + 1)
                        }
                        // A scalar element ends before a separator.
                        b',' if *depth == 0 => Some(self.pos),
                        _ => None,
                    };
                    match element_end {
                        Some(end) => {
                            let range = *start..end;
                            self.pos = end;
                            *consumed = end;
                            self.phase = Phase::AfterElement;
                            return Ok(Some(range));
                        }
                        None => self.pos += 1,
                    }
                }
                Phase::AfterElement => {
                    match byte {
                        b',' => self.phase = Phase::BeforeElement { first: false },
                        b']' => self.phase = Phase::Done,
                        b if b.is_ascii_whitespace() => {}
                        _ => return Err(syntax("expected a comma or the closing bracket")),
                    }
                    self.pos += 1;
                    *consumed = self.pos;
                }
                Phase::Done => {
                    if !byte.is_ascii_whitespace() {
                        return Err(syntax("trailing characters after the array"));
                    }
                    self.pos += 1;
                    *consumed = self.pos;
                }
            }
        }
        Ok(None)
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
        let body = format!(
            "[{}]",
            names
                .iter()
                .enumerate()
                .map(|(i, n)| build_json(i as i64, n))
                .collect::<Vec<_>>()
                .join(" ,\n ")
        );
        let mut seen = Vec::new();
        for_each_build(body.as_bytes(), |b| {
            seen.push(b.nixname.unwrap());
            Ok::<_, Refused>(())
        })
        .unwrap();
        assert_eq!(seen, names);
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
