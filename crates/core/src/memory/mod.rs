//! In-memory backends, for tests and for the conformance suites' own check. Not for production:
//! nothing survives a restart.

mod blob;
mod catalog;
mod prune;
mod records;

pub use blob::MemoryBlobStore;
pub use catalog::MemoryCatalog;

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn memory_backends_pass_the_conformance_suites() {
        crate::conformance::blob_store_suite(&super::MemoryBlobStore::new(None), true).await;
        crate::conformance::catalog_suite(&super::MemoryCatalog::new()).await;
    }
}
