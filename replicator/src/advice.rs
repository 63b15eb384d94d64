//! What to do, as the commands that do it: the library names a fix in its
//! own terms ([`cdc::Fix`]); both binaries install [`render`] so every
//! fix, in error lines and in log lines alike, is a command to paste.

use cdc::Fix;

/// Installs [`render`] for this process (both binaries call it first).
pub fn install() {
    cdc::fix::set_renderer(render);
}

/// A fix as the `cdc-setup` or `replicator` command that does it.
pub fn render(fix: &Fix) -> Option<String> {
    let db = |p: &std::path::Path| shell_word(&p.display().to_string());
    Some(match fix {
        Fix::Attach { db: d, tables } if tables.is_empty() => {
            format!("attach capture with: cdc-setup install --db {} --all", db(d))
        }
        Fix::Attach { db: d, tables } => format!(
            "attach {} with: cdc-setup install --db {}{}",
            if tables.len() == 1 { "it" } else { "them" },
            db(d),
            tables.iter().map(|t| format!(" --table {}", shell_word(t))).collect::<String>()
        ),
        Fix::Reattach { db: d, table } => {
            format!(
                "re-attach it (its targets then reseed it) with: cdc-setup install --db {} --table {}",
                db(d),
                shell_word(table)
            )
        }
        Fix::Upgrade { db: d } => format!(
            "upgrade it in place (nothing is lost, no consumer starts over) with: cdc-setup install --db {}",
            db(d)
        ),
        Fix::Detach { db: d, table } => {
            format!("stop capturing it with: cdc-setup uninstall --db {} --table {}", db(d), shell_word(table))
        }
        Fix::RereadInserts { db: d, table } => {
            format!("capture it with: cdc-setup install --db {} --table {} --inserts reread", db(d), shell_word(table))
        }
        Fix::FinishMigration { db: d } => format!("end it with: cdc-setup migrate --db {} --finish", db(d)),
        Fix::RemoveConsumers { db: d } => format!(
            "let them catch up, remove them with cdc-setup consumers --db {} --remove NAME, or pass --force",
            db(d)
        ),
        Fix::RemoveConsumer { db: d, name } => {
            format!("if it is gone for good: cdc-setup consumers --db {} --remove={}", db(d), shell_word(name))
        }
        Fix::AllowBootstrap => "run with --bootstrap auto to reseed it".into(),
        Fix::Reseed => "to reseed the target from this source, run again with --on-rewind reseed".into(),
        Fix::Unfollow { table } => {
            format!("to stop following it, leave --table {} out of the replicator's command", shell_word(table))
        }
        Fix::Republish => "restart the publisher with --bootstrap always".into(),
        Fix::Refollow { replica } => format!(
            "to reseed: delete the replica {}, restart the publisher with --bootstrap always, start this follower again",
            db(replica)
        ),
        Fix::Restart => "restart the replicator".into(),
        _ => return None,
    })
}

/// `text` as one shell word, quoted only when it must be, so that a fix
/// printed in a message works when pasted into a shell.
pub fn shell_word(text: &str) -> String {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:@%+=,".contains(&b));
    if plain { text.to_string() } else { format!("'{}'", text.replace('\'', "'\\''")) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_are_commands_that_paste_into_a_shell() {
        let fix = Fix::Attach { db: "my app.db".into(), tables: vec!["t".into(), "it's".into()] };
        assert_eq!(
            render(&fix).unwrap(),
            r#"attach them with: cdc-setup install --db 'my app.db' --table t --table 'it'\''s'"#
        );
        assert_eq!(shell_word("a/b.db"), "a/b.db");
        assert_eq!(shell_word(""), "''");
    }
}
