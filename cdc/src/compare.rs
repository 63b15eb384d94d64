//! Comparing a replica's table with its source's, value by value and
//! storage class by storage class (the demo's check, and the tests').

use rusqlite::Connection;

use crate::error::Result;
use crate::schema::describe;

/// Exact equality: same storage class, REALs bit for bit (`-0.0 != 0.0`).
fn same(a: rusqlite::types::ValueRef<'_>, b: rusqlite::types::ValueRef<'_>) -> bool {
    use rusqlite::types::ValueRef::Real;
    match (a, b) {
        (Real(x), Real(y)) => x.to_bits() == y.to_bits(),
        (a, b) => a == b && a.data_type() == b.data_type(),
    }
}

/// Compares a replica table with its source, row by row in identity
/// order, value by value and storage class by storage class. Returns the
/// first difference, or `None` when they are equal.
pub fn table(source: &Connection, replica: &Connection, table: &str) -> Result<Option<String>> {
    let desc = describe(source, table)?;
    // Rowids are compared wherever the replica keeps the source's (every
    // rowid table whose rowid has a name no column shadows).
    let sql = desc.comparable_sql();
    let (mut a, mut b) = (source.prepare(&sql)?, replica.prepare(&sql)?);
    let width = a.column_count();
    let (mut ra, mut rb) = (a.query([])?, b.query([])?);
    let mut n = 0u64;
    loop {
        match (ra.next()?, rb.next()?) {
            (None, None) => return Ok(None),
            (Some(_), None) => return Ok(Some(format!("{table}: the replica has only {n} rows"))),
            (None, Some(_)) => {
                return Ok(Some(format!("{table}: the replica has more than the source's {n} rows")));
            }
            (Some(x), Some(y)) => {
                for i in 0..width {
                    let (vx, vy) = (x.get_ref(i)?, y.get_ref(i)?);
                    if !same(vx, vy) {
                        return Ok(Some(format!("{table}: row {n}, column {i}: source {vx:?}, replica {vy:?}")));
                    }
                }
                n += 1;
            }
        }
    }
}
