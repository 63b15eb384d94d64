//! Which of the application's triggers fire before capture's.
//!
//! SQLite fires the AFTER triggers of a row in a fixed order: TEMP
//! triggers of the writing connection first, then the file's own triggers
//! newest first (the order of their rows in `sqlite_master`, which only
//! grows: a trigger created later has a larger rowid). Capture's INSERT
//! trigger logs `NEW` ([`InsertImage::New`]), which is the row as it ended
//! up only if no AFTER INSERT trigger that could rewrite it ran before;
//! capture's DELETE trigger logs `OLD` and must come before a trigger
//! that puts the row back. `cdc-setup install` creates capture's triggers
//! last, so they fire first; a trigger the application creates later
//! fires before them, and this module finds it (drift: capture is then
//! attached again, in front of it, and the table reseeded).

use rusqlite::Connection;

use cdc_schema::{InsertImage, Op, TableDesc};

use crate::error::Result;

/// When a trigger fires and on what: `(timing, event)`, upper case, as
/// its `CREATE TRIGGER` text says (`BEFORE` when it says nothing).
/// `None` when the text is not understood.
pub(crate) fn timing_and_event(sql: &str) -> Option<(String, String)> {
    let words = words(sql);
    let mut rest = words.iter().map(String::as_str);
    if !rest.next()?.eq_ignore_ascii_case("CREATE") {
        return None;
    }
    let mut word = rest.next()?;
    if word.eq_ignore_ascii_case("TEMP") || word.eq_ignore_ascii_case("TEMPORARY") {
        word = rest.next()?;
    }
    if !word.eq_ignore_ascii_case("TRIGGER") {
        return None;
    }
    let mut word = rest.next()?;
    if word.eq_ignore_ascii_case("IF") {
        // IF NOT EXISTS
        rest.next()?;
        rest.next()?;
        word = rest.next()?;
    }
    // The name, maybe qualified: `schema . name`.
    let mut next = rest.next()?;
    if next == "." {
        rest.next()?;
        next = rest.next()?;
    }
    let _ = word;
    let upper = next.to_ascii_uppercase();
    let (timing, event) = match upper.as_str() {
        "BEFORE" | "AFTER" => (upper.clone(), rest.next()?.to_ascii_uppercase()),
        "INSTEAD" => {
            rest.next()?;
            ("INSTEAD OF".to_string(), rest.next()?.to_ascii_uppercase())
        }
        _ => ("BEFORE".to_string(), upper.clone()),
    };
    matches!(event.as_str(), "INSERT" | "UPDATE" | "DELETE").then_some((timing, event))
}

/// The words of SQL text, comments and whitespace left out, quoted
/// identifiers and strings each one word, punctuation one word a
/// character. Enough to read a trigger's head.
fn words(sql: &str) -> Vec<String> {
    let chars: Vec<char> = sql.chars().collect();
    let (mut out, mut i) = (Vec::new(), 0);
    while i < chars.len() && out.len() < 16 {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
        } else if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                i += 1;
            }
            i += 2;
        } else if matches!(c, '"' | '\'' | '`' | '[') {
            let close = if c == '[' { ']' } else { c };
            let mut word = String::from(c);
            i += 1;
            while i < chars.len() {
                word.push(chars[i]);
                if chars[i] == close {
                    // A doubled quote is one quote inside the name.
                    if close != ']' && chars.get(i + 1) == Some(&close) {
                        i += 2;
                        word.push(close);
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            out.push(word);
        } else if c.is_alphanumeric() || c == '_' || c == '$' || !c.is_ascii() {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$' || !chars[i].is_ascii())
            {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// The application's triggers on `desc`'s table stored in the file that
/// fire before capture's own and could make what it logs wrong: AFTER
/// INSERT triggers when inserts log `NEW`, and AFTER DELETE triggers
/// (one could put the deleted row back). Their names, oldest first; a
/// trigger whose text is not understood counts. Capture's triggers
/// missing: empty (that is drift of its own).
pub(crate) fn fire_before_capture(conn: &Connection, desc: &TableDesc, inserts: InsertImage) -> Result<Vec<String>> {
    let ours = |op: Op| -> Result<Option<i64>> {
        let sql = "SELECT rowid FROM sqlite_master WHERE type = 'trigger' AND name = ?1";
        Ok(rusqlite::OptionalExtension::optional(conn.query_row(sql, [desc.trigger_name(op)], |r| r.get(0)))?)
    };
    let (Some(insert), Some(delete)) = (ours(Op::Insert)?, ours(Op::Delete)?) else { return Ok(Vec::new()) };
    let mut stmt = conn.prepare_cached(
        "SELECT rowid, name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = ?1 COLLATE NOCASE \
         AND name NOT LIKE '\\_cdc\\_%' ESCAPE '\\' AND rowid > ?2 ORDER BY rowid",
    )?;
    let rows = stmt.query_map(rusqlite::params![desc.name.as_ref(), insert.min(delete)], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, Option<String>>(2)?))
    })?;
    let mut before = Vec::new();
    for row in rows {
        let (rowid, name, sql) = row?;
        let fires = match sql.as_deref().and_then(timing_and_event) {
            None => true,
            Some((timing, event)) => {
                timing == "AFTER"
                    && match event.as_str() {
                        "INSERT" => inserts == InsertImage::New && rowid > insert,
                        "DELETE" => rowid > delete,
                        _ => false,
                    }
            }
        };
        if fires {
            before.push(name);
        }
    }
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::timing_and_event;

    fn te(sql: &str) -> Option<(String, String)> {
        timing_and_event(sql)
    }

    #[test]
    fn trigger_heads_are_read_as_sqlite_reads_them() {
        let p = |t: &str, e: &str| Some((t.to_string(), e.to_string()));
        assert_eq!(te("CREATE TRIGGER a AFTER INSERT ON t BEGIN SELECT 1; END"), p("AFTER", "INSERT"));
        assert_eq!(te("create trigger a insert on t begin select 1; end"), p("BEFORE", "INSERT"));
        assert_eq!(te("CREATE TRIGGER IF NOT EXISTS \"a b\" after delete on t BEGIN END"), p("AFTER", "DELETE"));
        assert_eq!(te("CREATE TRIGGER main.[x] INSTEAD OF UPDATE OF c ON v BEGIN END"), p("INSTEAD OF", "UPDATE"));
        assert_eq!(te("CREATE /* c */ TRIGGER `a\"` -- note\n AFTER UPDATE ON t BEGIN END"), p("AFTER", "UPDATE"));
        assert_eq!(te("CREATE TRIGGER \"after\" BEFORE INSERT ON t BEGIN END"), p("BEFORE", "INSERT"));
        assert_eq!(te("CREATE TRIGGER 'q''s' AFTER INSERT ON t BEGIN END"), p("AFTER", "INSERT"));
        assert_eq!(te("CREATE TEMP TRIGGER ü AFTER INSERT ON t BEGIN END"), p("AFTER", "INSERT"));
        assert_eq!(te("CREATE VIEW v AS SELECT 1"), None);
        assert_eq!(te("CREATE TRIGGER"), None);
    }
}
