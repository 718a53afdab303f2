//! x86-64 platform description: the ACPI tables a zone's kernel reads at boot.
//!
//! The tables are plain data, so this module builds on every host; only an x86-64 guest
//! consumes them.

pub mod acpi;
