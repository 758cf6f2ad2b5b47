//! Everything a person or a scraper reads: the one-shot check in each
//! output format, the soak reports and their charts. Pure functions of
//! verdicts, snapshots and summaries; the callers write the files.

pub mod chart;
pub mod check;
pub mod markdown;
pub mod number;
pub mod page;
pub mod report;
