//! Commands people give hydra-sentinel in comments, and who may give them.

use crate::policy::Period;

/// A command found in a comment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `@hydra-sentinel snooze 30d`: leave the package alone for a while
    /// (the policy caps how long).
    Snooze(Period),
    /// `@hydra-sentinel not-broken`: a human says no; the bot stands down
    /// for as long as the policy lets any snooze last.
    NotBroken,
}

/// The first command addressed to `mention` (e.g. `@hydra-sentinel`) in a
/// comment: `None` when there is none, `Some(Err(why))` when the line after
/// the mention is not a command we know.
pub fn parse(body: &str, mention: &str) -> Option<Result<Command, String>> {
    let mention = mention.to_ascii_lowercase();
    for line in body.lines() {
        let line = line.trim();
        // Quoted lines are someone citing an earlier command.
        if line.starts_with('>') {
            continue;
        }
        let lower = line.to_ascii_lowercase();
        let Some(rest) = lower.strip_prefix(&mention) else {
            continue;
        };
        if rest
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            continue; // @hydra-sentinel-bot is someone else
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        return Some(match words.as_slice() {
            ["snooze", span] => Period::parse(span)
                .map(Command::Snooze)
                .map_err(|e| format!("cannot read the snooze length {span:?}: {e}")),
            ["snooze"] => Err("snooze needs a length, e.g. `snooze 30d`".into()),
            ["not-broken"] | ["not", "broken"] => Ok(Command::NotBroken),
            other => Err(format!(
                "unknown command {:?}; I understand `snooze 30d` and `not-broken`",
                other.join(" ")
            )),
        });
    }
    None
}

/// Whether `author` may command the bot about a package with these
/// maintainers: its maintainers and the configured committers may, the bot
/// itself may not (it would obey its own quoted help text).
pub fn may_command(author: &str, maintainers: &[String], committers: &[String], bot: &str) -> bool {
    let same = |a: &String| a.eq_ignore_ascii_case(author);
    !author.eq_ignore_ascii_case(bot)
        && (maintainers.iter().any(same) || committers.iter().any(same))
}

#[cfg(test)]
mod tests {
    use super::*;

    const AT: &str = "@hydra-sentinel";

    #[test]
    fn reads_a_snooze_with_its_length() {
        assert_eq!(
            parse("@hydra-sentinel snooze 30d", AT),
            Some(Ok(Command::Snooze(Period::days(30))))
        );
        assert_eq!(
            parse("thanks!\n\n@Hydra-Sentinel  snooze 2w\n", AT),
            Some(Ok(Command::Snooze(Period::days(14))))
        );
    }

    #[test]
    fn reads_not_broken() {
        assert_eq!(
            parse("@hydra-sentinel not-broken", AT),
            Some(Ok(Command::NotBroken))
        );
    }

    #[test]
    fn ignores_comments_without_a_command_quotes_and_other_bots() {
        assert_eq!(parse("looks broken to me", AT), None);
        assert_eq!(
            parse("> @hydra-sentinel not-broken\nno, it is broken", AT),
            None
        );
        assert_eq!(parse("@hydra-sentinel-bot not-broken", AT), None);
    }

    #[test]
    fn an_unknown_or_incomplete_command_is_an_error_with_help() {
        assert!(
            matches!(parse("@hydra-sentinel merge", AT), Some(Err(e)) if e.contains("snooze 30d"))
        );
        assert!(matches!(parse("@hydra-sentinel snooze", AT), Some(Err(_))));
        assert!(matches!(
            parse("@hydra-sentinel snooze forever", AT),
            Some(Err(_))
        ));
    }

    #[test]
    fn only_maintainers_and_committers_may_command() {
        let maintainers = vec!["alice-gh".to_owned()];
        let committers = vec!["Carol".to_owned()];
        assert!(may_command(
            "alice-gh",
            &maintainers,
            &committers,
            "sentinel-bot"
        ));
        assert!(may_command(
            "carol",
            &maintainers,
            &committers,
            "sentinel-bot"
        ));
        assert!(!may_command(
            "mallory",
            &maintainers,
            &committers,
            "sentinel-bot"
        ));
        assert!(!may_command(
            "sentinel-bot",
            &["sentinel-bot".into()],
            &committers,
            "sentinel-bot"
        ));
    }
}
