//! A replica keeps the source's views: created, changed and dropped on the
//! source (by the `sqlite3` shell and Python) while the sidecar runs, and
//! a view of the user's own in the replica is never touched.

use std::path::Path;

use crate::support::{Sidecar, TempDb, lines_with, python, sqlite3, wait_equal, wait_until};

const DEADLINE: std::time::Duration = std::time::Duration::from_secs(120);

/// The views of a file (not this project's own), as the shell prints them.
fn views(db: &Path) -> String {
    sqlite3(db, "SELECT name, sql FROM sqlite_master WHERE type = 'view' AND name NOT LIKE 'mine%' ORDER BY name;")
}

#[test]
fn views_follow_the_source_and_the_users_own_are_left_alone() {
    let db = TempDb::with_schema(
        "CREATE TABLE orders(id INTEGER PRIMARY KEY, customer TEXT, total REAL);
         INSERT INTO orders VALUES(1, 'ann', 10.5), (2, 'bob', 3), (3, 'ann', 7);
         CREATE VIEW totals AS SELECT customer, sum(total) AS spent FROM orders GROUP BY customer;",
    );
    db.install(&["orders"]);
    let replica = db.dir.path().join("replica.db");
    let target = format!("sqlite:{}", replica.display());
    let mut sidecar =
        Sidecar::start(&["--db", db.path.to_str().unwrap(), "--target", &target], &db.dir.path().join("sidecar.log"));
    wait_equal(&db.path, &replica, &["orders"], DEADLINE);
    wait_until("the view copied", DEADLINE, || views(&replica) == views(&db.path));
    let query = "SELECT * FROM totals ORDER BY customer;";
    assert_eq!(sqlite3(&replica, query), sqlite3(&db.path, query));
    // A view of the user's own in the replica, and one the source then
    // creates under a name the user took there.
    sqlite3(&replica, "CREATE VIEW mine AS SELECT 1; CREATE VIEW mine_too AS SELECT 2;");
    // The shell creates one; Python changes one and drops another.
    sqlite3(
        &db.path,
        "CREATE VIEW big AS SELECT * FROM orders WHERE total > 5; INSERT INTO orders VALUES(4, 'cy', 99);",
    );
    wait_until("the new view copied", DEADLINE, || views(&replica) == views(&db.path));
    python(
        &db.path,
        r#"
import sqlite3, sys
c = sqlite3.connect(sys.argv[1], timeout=30, isolation_level=None)
c.execute("BEGIN IMMEDIATE")
c.execute("DROP VIEW totals")
c.execute("CREATE VIEW totals AS SELECT customer, count(*) AS n FROM orders GROUP BY customer")
c.execute("COMMIT")
c.execute("DROP VIEW big")
c.execute("CREATE VIEW mine_too AS SELECT 3")
c.execute("INSERT INTO orders VALUES(5, 'ann', 1)")
"#,
    );
    wait_equal(&db.path, &replica, &["orders"], DEADLINE);
    let source_views = sqlite3(
        &db.path,
        "SELECT name, sql FROM sqlite_master WHERE type = 'view' AND name <> 'mine_too' ORDER BY name;",
    );
    wait_until("the changed and dropped views followed", DEADLINE, || {
        sqlite3(
            &replica,
            "SELECT name, sql FROM sqlite_master WHERE type = 'view' AND name NOT LIKE 'mine%' ORDER BY name;",
        ) == source_views
    });
    assert_eq!(sqlite3(&replica, query), sqlite3(&db.path, query));
    // The user's views are untouched, and the clash is said.
    assert_eq!(sqlite3(&replica, "SELECT * FROM mine; SELECT * FROM mine_too;"), "1\n2\n");
    wait_until("the clash said", DEADLINE, || {
        !lines_with(&sidecar.log(), "has something else of this name").is_empty()
    });
    assert!(sidecar.running(), "{}", sidecar.log());
    assert!(lines_with(&sidecar.log(), "ERROR").is_empty(), "{}", sidecar.log());
}
