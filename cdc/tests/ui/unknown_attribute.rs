use cdc::Cdc;

#[derive(Cdc)]
#[cdc(table = "t", name = "x")]
struct T {
    #[cdc(primary, rename = "b")]
    a: i64,
}

fn main() {}
