//! virtio-block (placeholder, being written).
