//! Generated protocol messages (placeholder).
