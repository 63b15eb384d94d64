//! Compile-fail tests: every misuse of `#[derive(Cdc)]` is an error with a
//! span and a hint; the expected messages are in `tests/ui/*.stderr`
//! (regenerate with `TRYBUILD=overwrite` after an intended change).

#[test]
fn ui() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
