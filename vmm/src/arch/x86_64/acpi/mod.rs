//! Minimal ACPI tables for x86-64 zones (ACPI 6.5).
//!
//! - [`rsdp`]: Root System Description Pointer (§5.2.5.3);
//! - [`xsdt`]: Extended System Description Table (§5.2.8);
//! - [`fadt`]: Fixed ACPI Description Table (§5.2.9), HW-reduced;
//! - [`dsdt`]: Differentiated System Description Table (§5.2.11.1), just `\_S5_`;
//! - [`madt`]: Multiple APIC Description Table (§5.2.12);
//! - [`sdt`]: the System Description Table Header (§5.2.6) and Generic Address Structure
//!   (§5.2.3.2) every table uses;
//! - [`layout`]: table addresses, power-register ports and their bit layout.

pub mod dsdt;
pub mod fadt;
pub mod layout;
pub mod madt;
pub mod rsdp;
pub mod sdt;
pub mod xsdt;
