use cdc::Cdc;

#[derive(Cdc)]
#[cdc(without_rowid)]
struct Kv {
    key: String,
    value: Vec<u8>,
}

fn main() {}
