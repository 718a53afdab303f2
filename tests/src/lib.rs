//! Test support: the KVM testbed runner (placeholder).
