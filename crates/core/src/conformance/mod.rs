//! Conformance suites for [`BlobStore`](crate::blob::BlobStore) and
//! [`Catalog`](crate::catalog::Catalog): every backend runs them in its tests (memory here; local
//! disk, S3, SQLite and PostgreSQL in their crates), so all of them keep the contracts written on
//! the traits. The functions panic on the first broken rule. Behind the `testing` feature.
//!
//! - `blob`: the blob store's contract (whole objects, multipart, append);
//! - `catalog`: files, credentials, settings, usage and concurrent creation;
//! - `work`: what the catalog keeps for work in flight: tasks, deliveries, leases, uploads;
//! - `housekeeping`: changes made with their events, and pruning what ended.

mod blob;
mod catalog;
mod fixtures;
mod housekeeping;
mod work;

pub use blob::{append_suite, blob_store_suite, multipart_suite};
pub use catalog::catalog_suite;
pub use housekeeping::change_and_event_fault_suite;
