//! Code generation. Everything is wrapped in `const _: () = { ... };` so no
//! helper name leaks into the user's module; only the `XChange` alias is
//! emitted beside the struct.

use cdc_schema::ColumnDesc;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::DeriveInput;

use crate::ctxt::Ctxt;
use crate::model::Model;

pub fn derive(input: &DeriveInput) -> Result<TokenStream, Vec<syn::Error>> {
    let cx = Ctxt::default();
    let model = Model::from_ast(&cx, input);
    cx.check()?;
    Ok(expand(&model.expect("no errors means a model")))
}

fn column_tokens(c: &ColumnDesc) -> TokenStream {
    let (name, decl_type, key, not_null) = (c.name.as_ref(), c.decl_type.as_ref(), c.primary_key, c.not_null);
    quote! {
        ::cdc::ColumnDesc {
            name: ::cdc::__private::Cow::Borrowed(#name),
            decl_type: ::cdc::__private::Cow::Borrowed(#decl_type),
            primary_key: #key,
            not_null: #not_null,
            generated: false,
        }
    }
}

fn expand(model: &Model) -> TokenStream {
    let ident = &model.input.ident;
    let vis = &model.input.vis;
    let desc = &model.desc;
    let table = desc.name.as_ref();
    let without_rowid = desc.without_rowid;
    let columns = desc.columns.iter().map(column_tokens);
    let [ins, upd, del] = desc.create_triggers();
    let rust_type = ident.to_string();
    let width = desc.columns.len();

    let to_values = model.fields.iter().filter_map(|f| {
        let (field, column) = (f.ident, f.column.as_deref()?);
        Some(quote! { ::cdc::Value::from_sql(&self.#field, #column)? })
    });
    let mut index = 0usize;
    let from_values = model.fields.iter().map(|f| {
        let field = f.ident;
        match f.column.as_deref() {
            Some(column) => {
                let i = index;
                index += 1;
                quote! { #field: values[#i].to_rust(#column)? }
            }
            None => quote! { #field: ::core::default::Default::default() },
        }
    });
    let change = format_ident!("{}Change", ident);
    let doc = format!("Typed changes of table `{table}`, as [`{ident}`] values.");

    quote! {
        #[doc = #doc]
        #vis type #change = ::cdc::TypedChange<#ident>;

        const _: () = {
            impl ::cdc::Cdc for #ident {
                const TABLE: ::cdc::TableDesc = ::cdc::TableDesc {
                    name: ::cdc::__private::Cow::Borrowed(#table),
                    columns: ::cdc::__private::Cow::Borrowed(&[#(#columns),*]),
                    without_rowid: #without_rowid,
                    integer_key_not_rowid: false,
                };
                const CREATE_TRIGGERS: [&'static str; 3] = [#ins, #upd, #del];
                const RUST_TYPE: &'static str = #rust_type;

                fn to_row(&self) -> ::cdc::Result<::cdc::__private::Vec<::cdc::Value>> {
                    ::cdc::__private::Ok(::cdc::__private::Vec::from([#(#to_values),*]))
                }

                fn from_row(values: &[::cdc::Value]) -> ::cdc::Result<Self> {
                    if values.len() != #width {
                        return ::cdc::__private::Err(::cdc::Error::Convert {
                            column: ::cdc::__private::String::from(#table),
                            problem: ::cdc::__private::format!("expected {} values, got {}", #width, values.len()),
                        });
                    }
                    ::cdc::__private::Ok(#ident { #(#from_values),* })
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    /// Expansion snapshots: `tests/expand/NAME.rs` holds the input struct,
    /// `NAME.expanded.rs` the pretty-printed output. Set
    /// `UPDATE_SNAPSHOTS=1` to rewrite them after an intended change.
    #[test]
    fn expansion_snapshots() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/expand");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if name.ends_with(".expanded.rs") || !name.ends_with(".rs") {
                continue;
            }
            seen += 1;
            let input: syn::DeriveInput = syn::parse_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let tokens = super::derive(&input).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            let actual = prettyplease::unparse(&syn::parse2(tokens).unwrap());
            let snapshot = path.with_extension("expanded.rs");
            if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
                std::fs::write(&snapshot, &actual).unwrap();
            }
            let expected = std::fs::read_to_string(&snapshot).unwrap_or_default();
            assert_eq!(actual, expected, "{name}: expansion changed; rerun with UPDATE_SNAPSHOTS=1 if intended");
        }
        assert!(seen >= 2, "expected expansion inputs in {}", dir.display());
    }
}
