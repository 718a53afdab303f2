//! Zones' local OCI image store and container root filesystem builder.
//!
//! - [`Store`]: a content-addressed store of OCI images (`blobs/sha256/<hex>` plus a
//!   `refs.json` of names), filled by [`Store::import`] from an OCI image layout directory, an
//!   OCI archive or a `docker save` archive. Every blob is verified; a bad image leaves the
//!   store unchanged.
//! - [`rootfs::build`]: turns an image's layers into a read-only ext4 image, cached by manifest
//!   digest, for a zone to mount as its container's root.

pub mod digest;
mod import;
pub mod layer;
pub mod media;
mod refs;
pub mod rootfs;
pub mod spec;
mod store;

pub use digest::Digest;
pub use import::ImportError;
pub use store::{ImageDetails, ImageRef, ImageSummary, Store, StoreError, DEFAULT_STORE_ROOT};
