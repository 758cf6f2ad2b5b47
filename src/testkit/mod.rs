//! What the demo, the tests and the benchmarks need and the product must not
//! ship (behind the `testkit` feature, run by the `soakwatch-testkit`
//! binary): a disposable replica of the Phase B topology, a stand-in
//! service, the demo and synthetic soak histories.

pub mod demo;
pub mod kept;
pub mod replica;
pub mod standin;
pub mod synthetic;
