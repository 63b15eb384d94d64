use cdc::Cdc;

#[derive(Cdc)]
#[cdc(table = "t")]
#[cdc(table = "u")]
struct T {
    #[cdc(primary_key, primary_key)]
    a: i64,
    #[cdc(rename = "x", rename = "y")]
    b: i64,
}

fn main() {}
