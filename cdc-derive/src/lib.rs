//! `#[derive(Cdc)]`: at compile time, the table description and trigger
//! SQL for a struct (from the shared `cdc-schema` generator), conversions
//! between the struct and a row of SQLite values, and a typed change alias
//! (`UserChange` for `User`). Use it through the `cdc` crate, which
//! re-exports it.
//!
//! The crate is thin by design: [`attr`] parses attributes, collecting
//! every error with its span in a [`ctxt::Ctxt`] before anything is
//! generated (as serde_derive does); [`model`] turns the struct into a
//! checked table model; [`expand`] emits code.
#![forbid(unsafe_code)]

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
