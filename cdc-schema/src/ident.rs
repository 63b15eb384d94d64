//! Quoting. Every identifier the project writes into SQL goes through
//! [`quote_ident`], so table and column names with spaces, quotes, reserved
//! words or any Unicode work everywhere.

/// Quotes an identifier for SQLite: `my "odd" name` becomes `"my ""odd"" name"`.
pub fn quote_ident(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 2);
    out.push('"');
    for ch in name.chars() {
        if ch == '"' {
            out.push('"');
        }
        out.push(ch);
    }
    out.push('"');
    out
}

/// Quotes a string literal for SQLite: `it's` becomes `'it''s'`.
pub fn quote_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('\'');
    for ch in text.chars() {
        if ch == '\'' {
            out.push('\'');
        }
        out.push(ch);
    }
    out.push('\'');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_double_quotes_and_single_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(quote_ident("select"), "\"select\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
        assert_eq!(quote_ident("ünï cødé"), "\"ünï cødé\"");
    }
}
