#[derive(Cdc, Debug, Clone, PartialEq)]
#[cdc(table = "users")]
pub struct User {
    #[cdc(primary_key)]
    id: i64,
    name: String,
    email: Option<String>,
    #[cdc(rename = "score")]
    rating: f64,
    avatar: Vec<u8>,
    #[cdc(skip)]
    cached: u32,
}
