use cdc::Cdc;

struct Money(i64);

#[derive(Cdc)]
struct Account {
    id: i64,
    balance: Money,
    tags: Vec<String>,
    maybe: Option<Option<i64>>,
}

fn main() {}
