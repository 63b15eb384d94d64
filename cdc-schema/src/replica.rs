//! Statements a replica applies. Parameters follow the log's image layout
//! (rowid first for rowid tables, then captured columns), so an image's
//! values bind in order with no per-row SQL building.

use crate::ident::quote_ident;
use crate::table::TableDesc;

impl TableDesc {
    /// Column list of one image: `rowid, "a", "b"`.
    fn image_columns(&self) -> Vec<String> {
        self.rowid_alias()
            .map(str::to_string)
            .into_iter()
            .chain(self.captured().map(|c| quote_ident(&c.name)))
            .collect()
    }

    /// `WHERE` clause matching an image's identity, parameters from `first`.
    fn identity_predicate(&self, first: usize) -> String {
        match self.rowid_alias() {
            Some(alias) => format!("{alias} = ?{first}"),
            None => self
                .key_columns()
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{} = ?{}", quote_ident(&c.name), first + i))
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }

    /// Upsert of one image (`?1..?n` in image order). `OR REPLACE` mirrors
    /// the source exactly when the source itself used `INSERT OR REPLACE`
    /// and evicted rows by any unique constraint without a delete trigger.
    pub fn upsert_sql(&self) -> String {
        let cols = self.image_columns();
        let params: Vec<String> = (1..=cols.len()).map(|i| format!("?{i}")).collect();
        format!("INSERT OR REPLACE INTO {}({}) VALUES({})", quote_ident(&self.name), cols.join(", "), params.join(", "))
    }

    /// Update to the after image (`?1..?n`) of the row identified by the
    /// before image's identity (rowid, or key values in key order, from
    /// `?n+1`). Handles key changes; `OR REPLACE` as for [`Self::upsert_sql`].
    pub fn update_sql(&self) -> String {
        let cols = self.image_columns();
        let sets: Vec<String> = cols.iter().enumerate().map(|(i, c)| format!("{c} = ?{}", i + 1)).collect();
        format!(
            "UPDATE OR REPLACE {} SET {} WHERE {}",
            quote_ident(&self.name),
            sets.join(", "),
            self.identity_predicate(cols.len() + 1)
        )
    }

    /// Idempotent delete by identity (rowid, or key values in key order, from `?1`).
    pub fn delete_sql(&self) -> String {
        format!("DELETE FROM {} WHERE {}", quote_ident(&self.name), self.identity_predicate(1))
    }

    /// Positions within an image of the identity values that
    /// [`Self::update_sql`] and [`Self::delete_sql`] bind.
    pub fn identity_positions(&self) -> Vec<usize> {
        if self.rowid_alias().is_some() { vec![0] } else { self.key_positions() }
    }

    /// Removes every row (bootstrap purge).
    pub fn purge_sql(&self) -> String {
        format!("DELETE FROM {}", quote_ident(&self.name))
    }

    /// Reads every row as images, in identity order (bootstrap snapshot).
    pub fn snapshot_sql(&self) -> String {
        let order = match self.rowid_alias() {
            Some(alias) => alias.to_string(),
            None => self.key_columns().iter().map(|c| quote_ident(&c.name)).collect::<Vec<_>>().join(", "),
        };
        format!("SELECT {} FROM {} ORDER BY {order}", self.image_columns().join(", "), quote_ident(&self.name))
    }
}

#[cfg(test)]
mod tests {
    use crate::table::tests::users;
    use crate::{ColumnDesc, TableDesc};

    #[test]
    fn rowid_statements() {
        let t = users();
        assert_eq!(t.upsert_sql(), "INSERT OR REPLACE INTO \"users\"(rowid, \"id\", \"name\") VALUES(?1, ?2, ?3)");
        assert_eq!(
            t.update_sql(),
            "UPDATE OR REPLACE \"users\" SET rowid = ?1, \"id\" = ?2, \"name\" = ?3 WHERE rowid = ?4"
        );
        assert_eq!(t.delete_sql(), "DELETE FROM \"users\" WHERE rowid = ?1");
        assert_eq!(t.identity_positions(), vec![0]);
    }

    #[test]
    fn without_rowid_statements_use_key_order() {
        let t = TableDesc {
            name: "kv".into(),
            columns: vec![
                ColumnDesc { primary_key: 2, ..ColumnDesc::new("b", "TEXT") },
                ColumnDesc::new("v", "BLOB"),
                ColumnDesc { primary_key: 1, ..ColumnDesc::new("a", "INT") },
            ]
            .into(),
            without_rowid: true,
        };
        assert_eq!(t.delete_sql(), "DELETE FROM \"kv\" WHERE \"a\" = ?1 AND \"b\" = ?2");
        assert_eq!(t.identity_positions(), vec![2, 0]);
        assert!(t.update_sql().ends_with("WHERE \"a\" = ?4 AND \"b\" = ?5"));
        assert!(t.snapshot_sql().ends_with("ORDER BY \"a\", \"b\""));
    }
}
