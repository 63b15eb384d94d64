use cdc::Cdc;

#[derive(Cdc)]
struct T {
    name: String,
    #[cdc(rename = "NAME")]
    other: String,
    #[cdc(skip, primary_key)]
    cached: i64,
}

fn main() {}
