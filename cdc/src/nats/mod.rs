//! NATS JetStream (feature `nats`): publish a source's events to a stream
//! ([`NatsTarget`]) and follow a stream into a SQLite replica on another
//! host ([`Follower`]).
//!
//! The stream carries, on subject `STREAM.<table>` (the table name escaped
//! by [`subject_token`]), one message per event, and on two control
//! subjects the messages that make a stream followable on its own:
//!
//! - `STREAM.$schema`: the source's description ([`crate::Source`] as
//!   JSON), published whenever the publisher (re)opens it. A follower
//!   creates and checks its replica tables from it, and discards what it
//!   applied since the last commit point (a publisher that reopens
//!   publishes again from its last commit point).
//! - `STREAM.$commit`: a commit point, with the publisher's
//!   [`crate::DeliveryState`] as JSON. Everything before it is one atomic
//!   unit on a follower. It is also how a publisher restarts: the last
//!   commit message of the stream is the state of what the stream holds, so
//!   a stream created anew (or emptied by retention) is bootstrapped again.
//!
//! Headers: `Nats-Msg-Id` (server-side deduplication of a resend:
//! `LOG:SEQ` for a change, a per-bootstrap nonce and row index for a
//! bootstrap), `Cdc-Log-Id`, `Cdc-Kind` (`change`, `bootstrap-begin`,
//! `bootstrap-row`, `bootstrap-end`, `schema`, `commit`), `Cdc-Seq` (the
//! change's log position, or the commit point), `Cdc-Format` (`bincode`,
//! `json`, `debezium`), `Cdc-Time-Ms` (the application's write time).
//!
//! The async client (`async-nats`) and its tokio runtime live only here:
//! each target or follower owns a one-thread runtime and blocks on it, so
//! the rest of the library stays synchronous.

mod follow;
mod publish;
mod stream;
mod url;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

pub use follow::{FOLLOW_TABLE, Follower, FollowerOptions};
pub use publish::NatsTarget;
pub use url::{DEFAULT_MAX_AGE, NatsUrl};

/// The header naming the event kind.
pub(crate) const KIND: &str = "Cdc-Kind";
/// The header with the source log's id.
pub(crate) const LOG_ID: &str = "Cdc-Log-Id";
/// The header with the change's log position (or the commit point).
pub(crate) const SEQ: &str = "Cdc-Seq";
/// The header naming the payload's encoding.
pub(crate) const FORMAT: &str = "Cdc-Format";
/// The header with the application's write time (Unix milliseconds).
pub(crate) const TIME_MS: &str = "Cdc-Time-Ms";

/// The control token of schema messages (`$` is always escaped in table
/// tokens, so no table can take it).
pub(crate) const SCHEMA_TOKEN: &str = "$schema";
/// The control token of Debezium schema change records
/// ([`crate::debezium::Debezium::schema_change`]).
pub(crate) const DDL_TOKEN: &str = "$ddl";
/// The control token of commit messages.
pub(crate) const COMMIT_TOKEN: &str = "$commit";

/// How events are encoded in a message's payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PayloadFormat {
    /// bincode 2 of [`crate::Event`] (serde, standard configuration): the
    /// default, compact and exact.
    Bincode,
    /// This project's lossless JSON event form ([`crate::json`]).
    Json,
    /// Debezium's envelope ([`crate::debezium`]), for other consumers; a
    /// follower refuses it.
    Debezium,
}

impl PayloadFormat {
    pub(crate) fn name(self) -> &'static str {
        match self {
            PayloadFormat::Bincode => "bincode",
            PayloadFormat::Json => "json",
            PayloadFormat::Debezium => "debezium",
        }
    }
}

/// What a subject token escapes: every byte but ASCII letters, digits,
/// `_` and `-`.
const TOKEN_ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'_').remove(b'-');

/// A table name as one subject token: ASCII letters, digits, `_` and `-`
/// stay; every other byte of its UTF-8 (`.`, `*`, `>`, spaces, `%`, `$`,
/// non-ASCII) becomes `%XX` (upper-case hex). Reversible by
/// [`table_of_token`], and no escaped name starts with `$` (the control
/// subjects' mark).
pub fn subject_token(table: &str) -> String {
    utf8_percent_encode(table, TOKEN_ESCAPED).to_string()
}

/// The table name a [`subject_token`] came from.
pub fn table_of_token(token: &str) -> Option<String> {
    // Every `%` of a token starts an escape (a literal one is escaped).
    let escapes_whole =
        token.split('%').skip(1).all(|rest| rest.get(..2).is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if !escapes_whole {
        return None;
    }
    percent_decode_str(token).decode_utf8().ok().map(|t| t.into_owned())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn tokens_round_trip_and_never_look_like_control_subjects() {
        for name in ["users", "a.b", "x y", "*", ">", "%", "$schema", "naïve", "", "a-b_c9", "\"q\""] {
            let token = subject_token(name);
            assert!(!token.contains(['.', '*', '>', ' ', '$']), "{name:?} -> {token:?}");
            assert_eq!(table_of_token(&token).as_deref(), Some(name));
        }
        assert_eq!(subject_token("a.b"), "a%2Eb");
        assert_eq!(table_of_token("%ZZ"), None);
    }

    #[test]
    fn urls_parse_with_options_and_redact_credentials() {
        let u: NatsUrl = "nats://me:secret@h1:4222,h2:4222/CDC?format=json&max_age=24h".parse().unwrap();
        assert_eq!(u.stream, "CDC");
        assert_eq!(u.format, PayloadFormat::Json);
        assert_eq!(u.max_age, Duration::from_secs(86400));
        assert_eq!(u.servers(), "nats://me:secret@h1:4222,h2:4222");
        assert!(!u.redacted().contains("secret"));
        assert_eq!(u.subject("a.b"), "CDC.a%2Eb");
        for bad in [
            "nats://h:4222",
            "nats://h:4222/",
            "nats:///S",
            "nats://h/a.b",
            "http://h/S",
            "nats://h/S?format=xml",
            "nats://h/S?max_age=soon",
            "nats://h/S?retries=3",
            "nats://u:pw@h/S?max_age=0d",
        ] {
            let e = bad.parse::<NatsUrl>().unwrap_err().to_string();
            assert!(!e.contains("pw@"), "{e}");
            assert!(e.starts_with("bad NATS address"), "{e}");
        }
    }
}
