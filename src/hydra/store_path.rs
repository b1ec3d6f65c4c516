//! A Nix store path split into its hash and name, validated as Nix does.

/// The characters of Nix's base-32 alphabet: `0123456789abcdfghijklmnpqrsvwxyz`
/// (no e, o, u, t).
fn is_nix_base32(b: u8) -> bool {
    matches!(b, b'0'..=b'9' | b'a'..=b'z') && !matches!(b, b'e' | b'o' | b'u' | b't')
}
const HASH_LEN: usize = 32;
/// Nix refuses names longer than this.
const MAX_NAME_LEN: usize = 211;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorePath<'a> {
    pub hash: &'a str,
    pub name: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorePathError {
    #[error("{0:?} is not under a store directory")]
    NoStoreDir(String),
    #[error("{0:?} has no valid 32-character nix-base32 hash")]
    BadHash(String),
    #[error("{0:?} has an invalid name")]
    BadName(String),
}

impl<'a> StorePath<'a> {
    /// Parse `/nix/store/<hash>-<name>` (any store directory).
    pub fn parse(path: &'a str) -> Result<StorePath<'a>, StorePathError> {
        let base = match path.rsplit_once('/') {
            Some((dir, base)) if !dir.is_empty() => base,
            _ => return Err(StorePathError::NoStoreDir(path.to_owned())),
        };
        let (hash, rest) = (base.get(..HASH_LEN), base.get(HASH_LEN..));
        let (Some(hash), Some(rest)) = (hash, rest) else {
            return Err(StorePathError::BadHash(path.to_owned()));
        };
        // A match per byte rather than a search of the alphabet per
        // character: this runs for every build of a streamed eval.
        if !hash.bytes().all(is_nix_base32) {
            return Err(StorePathError::BadHash(path.to_owned()));
        }
        let Some(name) = rest.strip_prefix('-') else {
            return Err(StorePathError::BadHash(path.to_owned()));
        };
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && !name.starts_with('.')
            && name.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.' | b'_' | b'?' | b'=')
            });
        if !name_ok {
            return Err(StorePathError::BadName(path.to_owned()));
        }
        Ok(StorePath { hash, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn splits_a_derivation_path() {
        let p = StorePath::parse(
            "/nix/store/vx5dn4plx52dzdg8jf7bw5n6ml2a585h-python3.13-foo-1.0.3.drv",
        )
        .unwrap();
        assert_eq!(p.hash, "vx5dn4plx52dzdg8jf7bw5n6ml2a585h");
        assert_eq!(p.name, "python3.13-foo-1.0.3.drv");
    }

    #[test]
    fn refuses_paths_nix_would_refuse() {
        for bad in [
            "vx5dn4plx52dzdg8jf7bw5n6ml2a585h-x",
            "/nix/store/short-x",
            "/nix/store/ex5dn4plx52dzdg8jf7bw5n6ml2a585h-x",
            "/nix/store/vx5dn4plx52dzdg8jf7bw5n6ml2a585h",
            "/nix/store/vx5dn4plx52dzdg8jf7bw5n6ml2a585h-",
            "/nix/store/vx5dn4plx52dzdg8jf7bw5n6ml2a585h-.hidden",
            "/nix/store/vx5dn4plx52dzdg8jf7bw5n6ml2a585h-a b",
            "/nix/store/vx5dn4plx52dzdg8jf7bw5n6ml2a585h-ü",
        ] {
            assert!(StorePath::parse(bad).is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn the_hash_alphabet_is_nix_base32_and_nothing_else() {
        let alphabet = b"0123456789abcdfghijklmnpqrsvwxyz";
        for b in 0..=u8::MAX {
            assert_eq!(
                is_nix_base32(b),
                alphabet.contains(&b),
                "byte {b} ({:?})",
                b as char
            );
        }
    }

    proptest! {
        #[test]
        fn parses_every_valid_path_back_to_its_parts(
            hash in "[0-9a-df-np-sv-z]{32}",
            name in "[a-zA-Z0-9+_?=-][a-zA-Z0-9+._?=-]{0,60}",
        ) {
            let path = format!("/nix/store/{hash}-{name}");
            let parsed = StorePath::parse(&path).unwrap();
            prop_assert_eq!(parsed.hash, hash.as_str());
            prop_assert_eq!(parsed.name, name.as_str());
        }

        #[test]
        fn never_panics(path in ".{0,100}") {
            let _ = StorePath::parse(&path);
        }
    }
}
