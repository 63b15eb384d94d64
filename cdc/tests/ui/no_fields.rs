use cdc::Cdc;

#[derive(Cdc)]
struct Empty {}

#[derive(Cdc)]
struct Unit;

#[derive(Cdc)]
struct OnlySkipped {
    #[cdc(skip)]
    a: i64,
}

fn main() {}
