//! File names for pages: a sanitized slug plus a short hash of the exact
//! name, so that no job or maintainer name — `../../etc/passwd`, markup,
//! quotes, unicode — can choose where a page is written, and two names that
//! slug alike (`Foo`, `foo`, `foo'`) still get pages of their own.

use sha2::{Digest, Sha256};

/// The longest slug part of a file name (the hash comes on top).
const MAX_SLUG: usize = 48;

/// `[a-z0-9-]` only: lowercase ASCII letters and digits kept, every other run
/// of characters one `-`, trimmed and bounded; `x` when nothing is left.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if out.len() >= MAX_SLUG {
                break;
            }
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    if out.is_empty() {
        out.push('x');
    }
    out
}

/// The first 10 hex digits of the SHA-256 of the exact name.
pub fn short_hash(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .take(5)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `slug-hash.html`: one plain file name, never a path.
pub fn page_file(name: &str) -> String {
    format!("{}-{}.html", slug(name), short_hash(name))
}

/// Whether `name` is a file name this module could have made (or a fixed
/// one of the site): checked again just before writing.
pub fn is_safe_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && !name.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hostile_names_become_plain_file_names() {
        for name in [
            "../../etc/passwd",
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "foo'bar\"baz",
            "ünïcødé/名前",
            "..",
            "",
            "/",
            "a\0b",
            "CON",
        ] {
            let file = page_file(name);
            assert!(is_safe_file_name(&file), "{name:?} → {file:?}");
            assert!(!file.contains('/') && !file.contains('\\'), "{file}");
            assert!(file.ends_with(".html"));
        }
        assert_eq!(slug("../../etc/passwd"), "etc-passwd");
        assert_eq!(slug("python3Packages.foo'"), "python3packages-foo");
        assert_eq!(slug("@#!"), "x");
    }

    #[test]
    fn names_that_slug_alike_get_different_files() {
        assert_eq!(slug("Foo"), slug("foo"));
        assert_ne!(page_file("Foo"), page_file("foo"));
        assert_ne!(page_file("foo'"), page_file("foo"));
        assert_eq!(page_file("grafx"), page_file("grafx"), "stable");
    }

    #[test]
    fn long_names_are_bounded() {
        let file = page_file(&"a".repeat(500));
        assert!(file.len() <= MAX_SLUG + 1 + 10 + 5, "{file}");
    }

    proptest! {
        #[test]
        fn every_name_gives_a_safe_file_name(name in "\\PC{0,80}") {
            prop_assert!(is_safe_file_name(&page_file(&name)));
        }
    }
}
