//! Minimal ACPI tables for x86-64 zones (ACPI 6.5).
//!
//! - [`sdt`]: the System Description Table Header (§5.2.6) and Generic Address Structure
//!   (§5.2.3.2) every table uses;
//! - [`layout`]: table addresses, power-register ports and their bit layout.

pub mod layout;
pub mod sdt;
