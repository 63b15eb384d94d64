//! `#[derive(Cdc)]` against real SQLite: the compile-time SQL is the
//! runtime SQL, typed changes come out of the log, mismatches are named.

use cdc::capture::{install, install_for};
use cdc::rusqlite::Connection;
use cdc::rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};
use cdc::{Cdc, Event, TypedChange};
use serde::{Deserialize, Serialize};

#[derive(Cdc, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cdc(table = "users")]
struct User {
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

const USERS: &str = "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT, score REAL NOT NULL, avatar BLOB NOT NULL)";

/// A type mapped through rusqlite's traits with `sql_type`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Sku(String);

impl ToSql for Sku {
    fn to_sql(&self) -> cdc::rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::from(format!("SKU-{}", self.0)))
    }
}

impl FromSql for Sku {
    fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
        let s = value.as_str()?;
        Ok(Sku(s.trim_start_matches("SKU-").to_string()))
    }
}

#[derive(Cdc, Debug, Clone, PartialEq)]
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

const ORDER_LINES: &str = "CREATE TABLE order_line(order_id INTEGER, line INTEGER, sku TEXT, quantity INTEGER, paid INTEGER, PRIMARY KEY(order_id, line)) WITHOUT ROWID";

fn user(id: i64, name: &str) -> User {
    User { id, name: name.into(), email: None, rating: 0.1, avatar: vec![0, 255], cached: 0 }
}

fn events(conn: &Connection) -> Vec<Event> {
    let hw = cdc::log::high_water(conn).unwrap();
    let batch = cdc::log::LogReader::new().read(conn, 0, hw, usize::MAX).unwrap();
    batch.changes.into_iter().map(Event::Change).collect()
}

#[test]
fn compile_time_sql_equals_runtime_sql() {
    let conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(&format!("{USERS}; {ORDER_LINES};")).unwrap();
    let live = cdc::schema::describe(&conn, "users").unwrap();
    assert_eq!(User::CREATE_TRIGGERS, live.create_triggers().each_ref().map(String::as_str));
    let live = cdc::schema::describe(&conn, "order_line").unwrap();
    assert_eq!(OrderLine::CREATE_TRIGGERS, live.create_triggers().each_ref().map(String::as_str));
    assert_eq!(User::TABLE.capture_id(), cdc::schema::describe(&conn, "users").unwrap().capture_id());
}

#[test]
fn typed_changes_from_the_log() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(USERS).unwrap();
    install_for::<User>(&mut conn).unwrap();
    let ann = User { email: Some("ann@example.com".into()), ..user(1, "ann") };
    let row = ann.to_row().unwrap();
    conn.execute("INSERT INTO users VALUES(?1, ?2, ?3, ?4, ?5)", cdc::rusqlite::params_from_iter(&row)).unwrap();
    conn.execute("UPDATE users SET name = 'anne', id = 2", []).unwrap();
    conn.execute("DELETE FROM users", []).unwrap();

    let typed: Vec<UserChange> = events(&conn).iter().map(|e| e.typed::<User>().unwrap().unwrap()).collect();
    let anne = User { id: 2, name: "anne".into(), ..ann.clone() };
    match &typed[..] {
        [
            TypedChange::Insert { row: a, .. },
            TypedChange::Update { before, after, .. },
            TypedChange::Delete { row: d, seq, time_ms },
        ] => {
            assert_eq!(a, &ann);
            assert_eq!((before, after), (&ann, &anne));
            assert_eq!(d, &anne);
            assert_eq!(*seq, 4, "log row 1 is the install marker");
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
            assert!((now - time_ms).abs() < 60_000, "write time {time_ms} vs now {now}");
        }
        other => panic!("unexpected {other:?}"),
    }
    // Typed changes ship with bincode when the struct is serde-serializable.
    let config = bincode::config::standard();
    let bytes = bincode::serde::encode_to_vec(&typed, config).unwrap();
    let (back, _): (Vec<UserChange>, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
    assert_eq!(back, typed);
}

#[test]
fn sql_type_fields_and_composite_keys() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(ORDER_LINES).unwrap();
    install_for::<OrderLine>(&mut conn).unwrap();
    let line = OrderLine { order_id: 7, line: 2, sku: Sku("abc".into()), quantity: Some(3), paid: true };
    conn.execute(
        "INSERT INTO order_line VALUES(?1, ?2, ?3, ?4, ?5)",
        cdc::rusqlite::params_from_iter(line.to_row().unwrap()),
    )
    .unwrap();
    let stored: String = conn.query_row("SELECT sku FROM order_line", [], |r| r.get(0)).unwrap();
    assert_eq!(stored, "SKU-abc");
    let typed = events(&conn)[0].typed::<OrderLine>().unwrap().unwrap();
    assert!(matches!(typed, TypedChange::Insert { row, .. } if row == line));
    // Another table's events are not OrderLine's.
    assert!(events(&conn)[0].typed::<User>().is_none());
}

#[test]
fn columns_are_matched_by_name_not_position() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE users(avatar BLOB, score REAL, email TEXT, name TEXT, id INTEGER PRIMARY KEY)")
        .unwrap();
    install_for::<User>(&mut conn).unwrap();
    conn.execute("INSERT INTO users VALUES(x'00ff', 0.1, NULL, 'ann', 1)", []).unwrap();
    let typed = events(&conn)[0].typed::<User>().unwrap().unwrap();
    assert!(matches!(typed, TypedChange::Insert { row, .. } if row == user(1, "ann")));
}

#[test]
fn struct_and_table_mismatches_are_all_named() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch("CREATE TABLE users(id TEXT, name TEXT PRIMARY KEY, score REAL, avatar BLOB, extra INT)")
        .unwrap();
    let err = install_for::<User>(&mut conn).unwrap_err().to_string();
    for expected in [
        "table \"users\" does not match struct User",
        "column \"id\" is declared \"TEXT\" (Text affinity) but the field maps to \"INTEGER\" (Integer affinity)",
        "column \"id\" is not part of the primary key but the field is",
        "column \"name\" is part of the primary key but the field is not",
        "column \"email\" is missing from the table",
        "column \"extra\" has no field",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in: {err}");
    }
    assert!(!cdc::log::is_initialised(&conn).unwrap(), "nothing installed");
}

#[test]
fn from_row_rejects_wrong_types_with_the_column_name() {
    let err = User::from_row(&[
        cdc::Value::Text("x".into()),
        cdc::Value::Text("n".into()),
        cdc::Value::Null,
        cdc::Value::Real(1.0),
        cdc::Value::Blob(vec![]),
    ])
    .unwrap_err()
    .to_string();
    assert!(err.starts_with("column \"id\": "), "{err}");
    assert!(err.contains("stored value is text"), "{err}");
}

#[test]
fn install_by_name_and_by_struct_agree() {
    let mut conn = Connection::open_in_memory().unwrap();
    conn.execute_batch(USERS).unwrap();
    install(&mut conn, &["users".into()]).unwrap();
    assert!(matches!(install_for::<User>(&mut conn).unwrap(), cdc::capture::Installed::Unchanged { .. }));
}
