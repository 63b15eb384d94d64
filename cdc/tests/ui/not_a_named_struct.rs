use cdc::Cdc;

#[derive(Cdc)]
struct Pair(i64, String);

#[derive(Cdc)]
enum Status {
    Active,
}

#[derive(Cdc)]
struct Generic<T> {
    value: T,
}

fn main() {}
