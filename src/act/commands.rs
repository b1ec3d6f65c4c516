//! Maintainer commands: what people tell hydra-sentinel in comments, who
//! may tell it, and obeying (or declining) them.
//!
//! Owns: reading a command from a comment ([`parse`]), who may give one
//! ([`may_command`]: a package's maintainers and the configured
//! committers), turning an accepted command into a snooze in the ledger,
//! and the one reply to each command.
//!
//! Must never: obey anyone else, answer the same comment twice (it is
//! recorded as handled before the reply), or snooze longer than the policy
//! allows.

use crate::forge::{Failure, Forge, Refusal};
use crate::policy::{Facts, OptOutKind, Period};
use crate::store::NewOptOut;

use super::{ActError, ActReport, Actor, render};

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

impl<F: Forge> Actor<'_, F> {
    /// Obey (or decline) the commands in the comments of issue or PR
    /// `number` (for a `pull` request, in its reviews and review comments
    /// too).
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn handle_commands(
        &self,
        bot: &str,
        number: u64,
        pull: bool,
        attrs: &[String],
        facts: &Facts,
        now: i64,
        report: &mut ActReport,
    ) -> Result<(), ActError> {
        // On a pull request, a review or a comment on a line of the diff is
        // where a maintainer answers us just as well.
        let mut said = self.forge.comments(number).await?;
        if pull {
            said.extend(self.forge.review_comments(number).await?);
        }
        for comment in said {
            if comment.author.eq_ignore_ascii_case(bot) || self.store.command_handled(comment.id)? {
                continue;
            }
            let Some(parsed) = parse(&comment.body, &self.settings.mention) else {
                continue;
            };
            let committer = self
                .settings
                .committers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&comment.author));
            // The packages this author may speak for: all of them for a
            // committer, else those they maintain.
            let theirs: Vec<&String> = attrs
                .iter()
                .filter(|a| {
                    committer
                        || may_command(
                            &comment.author,
                            facts.maintainers.get(*a).map_or(&[][..], Vec::as_slice),
                            &[],
                            bot,
                        )
                })
                .collect();
            let unknown = attrs.iter().all(|a| !facts.maintainers.contains_key(a));
            if theirs.is_empty() && unknown && parsed.is_ok() {
                // Maintainers could not be resolved this cycle: neither obey
                // nor decline; look again next cycle.
                continue;
            }
            let (reply, accepted) = match parsed {
                Err(help) => (help, false),
                Ok(_) if theirs.is_empty() => (
                    format!(
                        "only the maintainers of {} and nixpkgs committers can give me commands; ignoring this one.",
                        attrs
                            .iter()
                            .map(|a| format!("`{a}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    false,
                ),
                Ok(command) => {
                    let max = self.policy.opt_out.max_snooze.secs();
                    let (span, what) = match command {
                        Command::Snooze(p) => (p.secs().min(max), "snooze"),
                        Command::NotBroken => (max, "not-broken"),
                    };
                    let until = now + span;
                    for attr in &theirs {
                        self.store.record_opt_out(&NewOptOut {
                            attr: (*attr).clone(),
                            kind: OptOutKind::Snooze,
                            recorded_at: now,
                            until: Some(until),
                            by: Some(comment.author.clone()),
                            note: format!("{what} in a comment on #{number}"),
                        })?;
                    }
                    let names = theirs
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ");
                    (
                        format!(
                            "understood: I leave {names} alone until {}.",
                            crate::format::time(until).get(..10).unwrap_or_default()
                        ),
                        true,
                    )
                }
            };
            // Remember first: a crash after replying must not reply twice;
            // a lost reply is the lesser evil.
            self.store.record_command(
                comment.id,
                number,
                &comment.author,
                &comment.body,
                accepted,
                now,
            )?;
            let replied = self
                .forge
                .comment(number, &render::command_reply(&comment.author, &reply))
                .await;
            match replied {
                // A maintainer locked the conversation after speaking: the
                // command holds, the reply cannot be posted.
                Err(e) if e.failure() == Failure::Refused(Refusal::Locked) => report.did(format!(
                    "#{number} is locked: the answer to {}'s command is not posted",
                    comment.author
                )),
                replied => {
                    replied?;
                }
            }
            (self.progress)();
            report.did(format!(
                "#{number}: {} command from {}",
                if accepted { "obeyed" } else { "declined" },
                comment.author
            ));
        }
        Ok(())
    }
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
