//! `#[derive(Merge)]`: implements `nerve_settings::Merge` for a struct with named fields by
//! merging each field with the same field of the other value (`self.f.merge(under.f)`), so
//! that a settings struct read twice (once from the command line, once from a config file)
//! becomes one value without a hand-written line per setting. Each field's type decides how
//! (see `nerve_settings::Merge`'s implementations).

use proc_macro::TokenStream;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Fields};

/// Derives `nerve_settings::Merge` for a struct with named fields.
///
/// # Errors
/// A compile error on an enum, a union or a tuple struct.
#[proc_macro_derive(Merge)]
pub fn derive_merge(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    let name = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named.named.iter().filter_map(|f| f.ident.clone()).collect::<Vec<_>>(),
            _ => return error(name, "#[derive(Merge)] needs a struct with named fields"),
        },
        _ => return error(name, "#[derive(Merge)] needs a struct with named fields"),
    };
    quote! {
        impl #impl_generics ::nerve_settings::Merge for #name #ty_generics #where_clause {
            fn merge(self, under: Self) -> Self {
                Self {
                    #( #fields: ::nerve_settings::Merge::merge(self.#fields, under.#fields), )*
                }
            }
        }
    }
    .into()
}

fn error(name: &syn::Ident, message: &str) -> TokenStream {
    syn::Error::new(name.span(), message).to_compile_error().into()
}
