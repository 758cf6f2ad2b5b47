//! Fails a plain `cargo test`: the end-to-end suite (tests/e2e/) needs the
//! `testkit` feature and are not even built without it, which must never pass as a
//! green suite.

#[cfg(not(feature = "testkit"))]
#[test]
fn the_end_to_end_tests_need_the_testkit_feature() {
    panic!(
        "the end-to-end tests were not built: run ./scripts/test.sh \
         (or `cargo test --features testkit`)"
    );
}
