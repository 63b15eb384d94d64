//! `#[cdc(...)]` attributes on the struct and its fields.

use syn::meta::ParseNestedMeta;
use syn::{Attribute, LitStr};

use crate::ctxt::Ctxt;

const CONTAINER_KEYS: &str = "`table = \"...\"`, `without_rowid`";
const FIELD_KEYS: &str = "`rename = \"...\"`, `primary_key`, `skip`, `sql_type = \"...\"`";

/// A value that may be set once; a second setting is an error.
struct Once<T> {
    name: &'static str,
    value: Option<T>,
}

impl<T> Once<T> {
    fn new(name: &'static str) -> Self {
        Once { name, value: None }
    }

    fn set(&mut self, cx: &Ctxt, meta: &ParseNestedMeta, value: T) {
        if self.value.is_some() {
            cx.error_spanned_by(&meta.path, format!("duplicate cdc attribute `{}`", self.name));
        } else {
            self.value = Some(value);
        }
    }
}

fn string(cx: &Ctxt, meta: &ParseNestedMeta) -> Option<LitStr> {
    match meta.value().and_then(|v| v.parse::<LitStr>()) {
        Ok(lit) => Some(lit),
        Err(err) => {
            cx.syn_error(err);
            None
        }
    }
}

/// Runs `each` on every `#[cdc(...)]` item of `attrs`.
fn for_each_cdc(cx: &Ctxt, attrs: &[Attribute], mut each: impl FnMut(&ParseNestedMeta) -> syn::Result<()>) {
    for attr in attrs.iter().filter(|a| a.path().is_ident("cdc")) {
        if let Err(err) = attr.parse_nested_meta(|meta| each(&meta)) {
            cx.syn_error(err);
        }
    }
}

/// Attributes on the struct.
pub struct Container {
    pub table: Option<LitStr>,
    pub without_rowid: bool,
}

impl Container {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut table = Once::new("table");
        let mut without_rowid = Once::new("without_rowid");
        for_each_cdc(cx, attrs, |meta| {
            if meta.path.is_ident("table") {
                if let Some(lit) = string(cx, meta) {
                    table.set(cx, meta, lit);
                }
            } else if meta.path.is_ident("without_rowid") {
                without_rowid.set(cx, meta, ());
            } else {
                let name = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                cx.error_spanned_by(
                    &meta.path,
                    format!("unknown cdc attribute `{name}` on a struct; expected one of {CONTAINER_KEYS}"),
                );
                skip_value(meta);
            }
            Ok(())
        });
        Container { table: table.value, without_rowid: without_rowid.value.is_some() }
    }
}

/// Attributes on a field.
pub struct Field {
    pub rename: Option<LitStr>,
    pub primary_key: bool,
    pub skip: bool,
    pub sql_type: Option<LitStr>,
}

impl Field {
    pub fn from_ast(cx: &Ctxt, attrs: &[Attribute]) -> Self {
        let mut rename = Once::new("rename");
        let mut primary_key = Once::new("primary_key");
        let mut skip = Once::new("skip");
        let mut sql_type = Once::new("sql_type");
        for_each_cdc(cx, attrs, |meta| {
            if meta.path.is_ident("rename") {
                if let Some(lit) = string(cx, meta) {
                    rename.set(cx, meta, lit);
                }
            } else if meta.path.is_ident("sql_type") {
                if let Some(lit) = string(cx, meta) {
                    sql_type.set(cx, meta, lit);
                }
            } else if meta.path.is_ident("primary_key") {
                primary_key.set(cx, meta, ());
            } else if meta.path.is_ident("skip") {
                skip.set(cx, meta, ());
            } else {
                let name = meta.path.get_ident().map(ToString::to_string).unwrap_or_default();
                cx.error_spanned_by(
                    &meta.path,
                    format!("unknown cdc attribute `{name}` on a field; expected one of {FIELD_KEYS}"),
                );
                skip_value(meta);
            }
            Ok(())
        });
        Field {
            rename: rename.value,
            primary_key: primary_key.value.is_some(),
            skip: skip.value.is_some(),
            sql_type: sql_type.value,
        }
    }
}

/// Consumes `= value` after an unknown key so parsing can go on and report
/// the remaining attributes too.
fn skip_value(meta: &ParseNestedMeta) {
    if meta.input.peek(syn::Token![=]) {
        let _ = meta.value().and_then(|v| v.parse::<syn::Expr>());
    }
}
