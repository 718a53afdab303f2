//! x86-64 guest layout, the state the Linux 64-bit boot protocol expects at entry
//! (Documentation/arch/x86/boot.rst, "64-bit Boot Protocol"), and the ACPI tables the kernel
//! reads at boot.

pub mod acpi;
pub mod boot_params;
pub mod gdt;
pub mod layout;
pub mod paging;
