//! The shipped policy at a quicker pace, for stories told in days (the
//! demo, the integration tests): its shape kept, its ladder overrides
//! dropped, a few keys set.

use crate::policy::NIXPKGS_POLICY;

/// The built-in nixpkgs policy without its `[[override]]` sections, with
/// each key of `set` (anywhere in the file) given its value, written as
/// TOML (`("min_notice", "\"1d\"")`).
pub fn paced_policy(set: &[(&str, &str)]) -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in NIXPKGS_POLICY.lines() {
        if line.starts_with("[[override]]") {
            skipping = true;
            continue;
        }
        if line.starts_with('[') {
            skipping = false;
        }
        if skipping {
            continue;
        }
        let key = line.split_once(" = ").map(|(k, _)| k);
        match set.iter().find(|(k, _)| Some(*k) == key) {
            Some((k, v)) => out.push_str(&format!("{k} = {v}")),
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;

    #[test]
    fn a_paced_policy_keeps_the_shape_drops_the_overrides_and_sets_the_keys() {
        let text = paced_policy(&[
            ("remind_before_mark", "[]"),
            ("min_notice", "\"1d\""),
            ("max_snooze", "\"30d\""),
        ]);
        assert!(NIXPKGS_POLICY.contains("[[override]]"), "nothing to drop");
        assert!(!text.contains("[[override]]"), "{text}");
        assert!(text.contains("\nmin_notice = \"1d\"\n"), "{text}");
        assert!(text.contains("\nmax_snooze = \"30d\"\n"), "{text}");
        let policy = Policy::parse(&text, std::path::Path::new("paced.toml"))
            .unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(policy.opt_out.max_snooze.secs(), 30 * 86_400);
    }
}
