//! Architecture-specific platform description (firmware tables and the like).

pub mod x86_64;
