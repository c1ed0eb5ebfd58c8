//! filedock-server: the HTTP front. It parses requests, authenticates them, calls
//! [`filedock_core::FileService`] and renders answers — the native API, the `/blob/` route that
//! serves the local store's signed URLs, and (in `dialects/`) the vendor APIs. It holds no
//! business rule of its own and never touches a backend directly.
//!
//! Layout: [`state`] (what handlers reach), [`router`] (every route and layer), [`serve`]
//! (the accept loop); the native API and the vendor dialects in [`dialects`]; the routes of
//! signed URLs and links in [`blob`] and [`links`]; operations in [`ops`].

pub mod auth;
pub mod blob;
pub mod body;
pub mod config;
pub mod cors;
pub mod dialects;
pub mod error;
pub mod fetch;
mod framing;
pub mod idempotency;
mod linger;
pub mod links;
pub mod mcp;
pub mod openapi;
pub mod ops;
pub mod repoll;
pub mod respond;
pub mod router;
pub mod serve;
pub mod state;
pub mod web;
pub mod webhooks;

pub use router::router;
pub use serve::{Timeouts, serve};
pub use state::AppState;
