//! The parsed, checked model of a `#[derive(Cdc)]` struct. Everything that
//! can be wrong is found here, before any code is generated.

use std::borrow::Cow;

use cdc_schema::{ColumnDesc, TableDesc};
use syn::{Data, DeriveInput, Fields, GenericArgument, PathArguments, Type};

use crate::attr;
use crate::ctxt::Ctxt;

pub struct Field<'a> {
    pub ident: &'a syn::Ident,
    /// `None` for `#[cdc(skip)]` fields (filled with `Default::default()`).
    pub column: Option<String>,
}

pub struct Model<'a> {
    pub input: &'a DeriveInput,
    pub fields: Vec<Field<'a>>,
    pub desc: TableDesc,
}

/// The SQL type of a supported Rust type, and whether it is an `Option`.
fn sql_type_of(ty: &Type) -> Option<(&'static str, bool)> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    let only_arg = || match &last.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Type(t) => Some(t),
            _ => None,
        },
        _ => None,
    };
    let plain = |t: &'static str| matches!(last.arguments, PathArguments::None).then_some((t, false));
    match last.ident.to_string().as_str() {
        "i8" | "i16" | "i32" | "i64" | "isize" | "u8" | "u16" | "u32" | "u64" | "usize" | "bool" => plain("INTEGER"),
        "f32" | "f64" => plain("REAL"),
        "String" => plain("TEXT"),
        "Vec" => match only_arg()? {
            Type::Path(p) if p.path.is_ident("u8") => Some(("BLOB", false)),
            _ => None,
        },
        "Option" => match sql_type_of(only_arg()?)? {
            (_, true) => None,
            (t, false) => Some((t, true)),
        },
        _ => None,
    }
}

/// `UserProfile` becomes `user_profile`: the table name when `table` is not given.
pub fn snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, ch) in name.chars().enumerate() {
        if ch.is_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.extend(ch.to_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

impl<'a> Model<'a> {
    pub fn from_ast(cx: &Ctxt, input: &'a DeriveInput) -> Option<Model<'a>> {
        let container = attr::Container::from_ast(cx, &input.attrs);
        let named = match &input.data {
            Data::Struct(s) => match &s.fields {
                Fields::Named(named) => Some(named),
                Fields::Unnamed(_) => {
                    cx.error_spanned_by(
                        &input.ident,
                        "#[derive(Cdc)] needs a struct with named fields (one per column), not a tuple struct",
                    );
                    None
                }
                Fields::Unit => {
                    cx.error_spanned_by(&input.ident, "#[derive(Cdc)] needs at least one field (one per column)");
                    None
                }
            },
            Data::Enum(_) => {
                cx.error_spanned_by(&input.ident, "#[derive(Cdc)] works on structs (a row of a table), not enums");
                None
            }
            Data::Union(_) => {
                cx.error_spanned_by(&input.ident, "#[derive(Cdc)] works on structs (a row of a table), not unions");
                None
            }
        };
        if !input.generics.params.is_empty() {
            cx.error_spanned_by(
                &input.generics,
                "#[derive(Cdc)] does not support generic structs: a table has one fixed set of column types",
            );
        }
        let named = named?;

        let mut fields = Vec::new();
        let mut columns: Vec<ColumnDesc> = Vec::new();
        let mut key_len = 0u16;
        for f in &named.named {
            let ident = f.ident.as_ref().expect("named field");
            let a = attr::Field::from_ast(cx, &f.attrs);
            if a.skip {
                if a.primary_key || a.rename.is_some() || a.sql_type.is_some() {
                    cx.error_spanned_by(
                        ident,
                        "a `skip` field is not a column: it cannot also have `primary_key`, `rename` or `sql_type`",
                    );
                }
                fields.push(Field { ident, column: None });
                continue;
            }
            let column = a.rename.as_ref().map(|l| l.value()).unwrap_or_else(|| ident.to_string());
            let (decl_type, optional) = match (&a.sql_type, sql_type_of(&f.ty)) {
                (Some(lit), found) => (lit.value(), found.is_some_and(|(_, o)| o)),
                (None, Some((t, optional))) => (t.to_string(), optional),
                (None, None) => {
                    cx.error_spanned_by(
                        &f.ty,
                        "unsupported field type: #[derive(Cdc)] maps integers, f32, f64, bool, String, Vec<u8> and Option of them; \
                         for another type that implements rusqlite's ToSql and FromSql, add #[cdc(sql_type = \"TEXT\")] \
                         (or whichever SQL type it is stored as)",
                    );
                    (String::new(), false)
                }
            };
            if let Some(prev) = columns.iter().find(|c| c.name.eq_ignore_ascii_case(&column)) {
                let span = a.rename.as_ref().map(|l| l.span()).unwrap_or_else(|| ident.span());
                cx.syn_error(syn::Error::new(
                    span,
                    format!("two fields map to column `{}`; give one a different #[cdc(rename = \"...\")]", prev.name),
                ));
                continue;
            }
            if a.primary_key {
                key_len += 1;
            }
            columns.push(ColumnDesc {
                name: Cow::Owned(column.clone()),
                decl_type: Cow::Owned(decl_type),
                primary_key: if a.primary_key { key_len } else { 0 },
                not_null: !optional,
                generated: false,
            });
            fields.push(Field { ident, column: Some(column) });
        }
        if columns.is_empty() {
            cx.error_spanned_by(&input.ident, "#[derive(Cdc)] needs at least one field that is not #[cdc(skip)]");
            return None;
        }
        if container.without_rowid && key_len == 0 {
            cx.error_spanned_by(
                &input.ident,
                "`without_rowid` needs a primary key: mark its field(s) with #[cdc(primary_key)]",
            );
            return None;
        }
        let name = container.table.as_ref().map(|l| l.value()).unwrap_or_else(|| snake_case(&input.ident.to_string()));
        let desc = TableDesc {
            name: name.into(),
            columns: columns.into(),
            without_rowid: container.without_rowid,
            integer_key_not_rowid: false,
        };
        if let Err(err) = desc.validate() {
            let span = container.table.as_ref().map(|l| l.span()).unwrap_or_else(|| input.ident.span());
            cx.syn_error(syn::Error::new(span, err.0));
            return None;
        }
        Some(Model { input, fields, desc })
    }
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_names() {
        assert_eq!(snake_case("User"), "user");
        assert_eq!(snake_case("UserProfile"), "user_profile");
    }
}
