//! `#[derive(Cdc)]`: at compile time, the table description and trigger
//! SQL for a struct (from the shared `cdc-schema` generator), conversions
//! between the struct and a row of SQLite values, and a typed change alias
//! (`UserChange` for `User`). Use it through the `cdc` crate, which
//! re-exports it.
//!
//! # What it generates
//!
//! ```
//! use cdc::{Cdc, Value};
//!
//! #[derive(Cdc, Debug, PartialEq)]
//! #[cdc(table = "users")]
//! struct User {
//!     #[cdc(primary_key)]
//!     id: i64,
//!     #[cdc(rename = "full_name")]
//!     name: String,
//!     avatar: Option<Vec<u8>>,
//!     #[cdc(skip)]
//!     cached: u32, // not a column; `Default::default()` when read back
//! }
//!
//! // The table as the struct describes it: the same model `cdc-setup`
//! // builds by introspecting the live table.
//! let table = User::TABLE;
//! assert_eq!(table.name, "users");
//! let columns: Vec<&str> = table.columns.iter().map(|c| c.name.as_ref()).collect();
//! assert_eq!(columns, ["id", "full_name", "avatar"]);
//!
//! // The capture triggers, as constants: the very SQL the runtime installs.
//! assert!(User::CREATE_TRIGGERS[0].starts_with("CREATE TRIGGER \"_cdc_insert_users\" AFTER INSERT ON \"users\""));
//! assert!(User::CREATE_TRIGGERS[2].contains("AFTER DELETE"));
//!
//! // Conversions to and from a row of exact SQLite values.
//! let ann = User { id: 1, name: "ann".into(), avatar: Some(vec![0, 255]), cached: 7 };
//! let row = ann.to_row()?;
//! assert_eq!(row, [Value::Integer(1), Value::Text("ann".into()), Value::Blob(vec![0, 255])]);
//! assert_eq!(User::from_row(&row)?, User { cached: 0, ..ann });
//!
//! // And a typed change enum for this struct.
//! let change: UserChange = cdc::TypedChange::BootstrapEnd { rows: 1 };
//! assert!(matches!(change, cdc::TypedChange::BootstrapEnd { rows: 1 }));
//! # Ok::<(), cdc::Error>(())
//! ```
//!
//! # Attributes
//!
//! On the struct: `table = "name"` (default: the struct name in
//! snake_case), `without_rowid` (needs a key). On fields: `primary_key`
//! (several make a composite key, in field order), `rename = "column"`,
//! `skip`, `sql_type = "TEXT"` (for any type implementing rusqlite's
//! `ToSql` and `FromSql`).
//!
//! # Misuse is a compile error
//!
//! Every problem is reported at once, each with its span and a hint. A
//! field type the derive cannot map:
//!
//! ```compile_fail
//! use cdc::Cdc;
//!
//! struct Money(i64);
//!
//! #[derive(Cdc)]
//! struct Account {
//!     id: i64,
//!     balance: Money, // error: unsupported field type ... add #[cdc(sql_type = "TEXT")]
//! }
//! ```
//!
//! A `WITHOUT ROWID` table needs a primary key:
//!
//! ```compile_fail
//! use cdc::Cdc;
//!
//! #[derive(Cdc)]
//! #[cdc(without_rowid)]
//! struct Tag {
//!     name: String, // error: no field is #[cdc(primary_key)]
//! }
//! ```
//!
//! An attribute that does not exist:
//!
//! ```compile_fail
//! use cdc::Cdc;
//!
//! #[derive(Cdc)]
//! struct User {
//!     #[cdc(primary)] // error: unknown cdc attribute `primary` on a field; expected one of ...
//!     id: i64,
//! }
//! ```
//!
//! Only structs with named fields map to tables:
//!
//! ```compile_fail
//! use cdc::Cdc;
//!
//! #[derive(Cdc)]
//! enum Status { Active, Gone }
//! ```
//!
//! # Shape of the crate
//!
//! The crate is thin by design: `attr` parses attributes, collecting
//! every error with its span in a `ctxt::Ctxt` before anything is
//! generated (as serde_derive does); `model` turns the struct into a
//! checked table model; `expand` emits code.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attr;
mod ctxt;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Derives `cdc::Cdc`. See the `cdc` crate documentation for the attributes.
#[proc_macro_derive(Cdc, attributes(cdc))]
pub fn derive_cdc(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as syn::DeriveInput);
    expand::derive(&input).unwrap_or_else(ctxt::to_compile_errors).into()
}
