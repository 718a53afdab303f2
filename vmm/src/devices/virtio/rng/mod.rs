//! virtio-rng (placeholder, being written).
