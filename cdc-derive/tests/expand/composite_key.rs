#[derive(Cdc)]
#[cdc(without_rowid)]
struct OrderLine {
    #[cdc(primary_key)]
    order_id: i64,
    #[cdc(primary_key)]
    line: i32,
    #[cdc(sql_type = "TEXT")]
    sku: Sku,
    quantity: Option<u32>,
    paid: bool,
}
