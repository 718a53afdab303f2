//! Sizes given on the command line: `256M`, `1G`, `512Ki`, `1048576` (bytes).
//!
//! Suffixes are binary multiples (K = 1024); `Ki`/`KiB`/`KB` spellings are accepted too.

use std::fmt;
use std::str::FromStr;

const MIB: u64 = 1 << 20;

/// A size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SizeError {
    #[error("empty size")]
    Empty,
    #[error("{0:?} does not start with a whole number")]
    BadNumber(String),
    #[error("unknown size suffix {0:?} (use K, M, G or T)")]
    BadSuffix(String),
    #[error("size {0:?} is too large")]
    Overflow(String),
}

impl Size {
    pub const fn from_mib(mib: u64) -> Self {
        Size(mib * MIB)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }

    /// Whole mebibytes, if the size is a multiple of 1 MiB.
    pub const fn whole_mib(self) -> Option<u64> {
        if self.0 & (MIB - 1) == 0 {
            Some(self.0 / MIB)
        } else {
            None
        }
    }
}

impl FromStr for Size {
    type Err = SizeError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SizeError::Empty);
        }
        let digits_end = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (digits, suffix) = text.split_at(digits_end);
        if digits.is_empty() {
            return Err(SizeError::BadNumber(text.to_string()));
        }
        let number: u64 = digits
            .parse()
            .map_err(|_| SizeError::Overflow(text.to_string()))?;
        let shift = match suffix.to_ascii_uppercase().as_str() {
            "" | "B" => 0,
            "K" | "KB" | "KI" | "KIB" => 10,
            "M" | "MB" | "MI" | "MIB" => 20,
            "G" | "GB" | "GI" | "GIB" => 30,
            "T" | "TB" | "TI" | "TIB" => 40,
            _ => return Err(SizeError::BadSuffix(suffix.to_string())),
        };
        number
            .checked_mul(1u64 << shift)
            .map(Size)
            .ok_or_else(|| SizeError::Overflow(text.to_string()))
    }
}

impl fmt::Display for Size {
    /// The largest unit that divides the size exactly: `256M`, `1G`, `1500`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("T", 40), ("G", 30), ("M", 20), ("K", 10)] {
            // Masks, not `is_multiple_of`, which is newer than the workspace's rust-version.
            if self.0 != 0 && self.0 & ((1u64 << shift) - 1) == 0 {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_size_parse_suffixes_binary_multiples() {
        assert_eq!("256M".parse(), Ok(Size(256 << 20)));
        assert_eq!("1G".parse(), Ok(Size(1 << 30)));
        assert_eq!("1g".parse(), Ok(Size(1 << 30)));
        assert_eq!("512Ki".parse(), Ok(Size(512 << 10)));
        assert_eq!("2MiB".parse(), Ok(Size(2 << 20)));
        assert_eq!("3GB".parse(), Ok(Size(3 << 30)));
        assert_eq!("1T".parse(), Ok(Size(1 << 40)));
        assert_eq!("4096".parse(), Ok(Size(4096)));
        assert_eq!(" 64M ".parse(), Ok(Size(64 << 20)));
    }

    #[test]
    fn test_size_parse_bad_input_errors() {
        assert_eq!("".parse::<Size>(), Err(SizeError::Empty));
        assert_eq!(
            "M".parse::<Size>(),
            Err(SizeError::BadNumber("M".to_string()))
        );
        assert_eq!(
            "-1G".parse::<Size>(),
            Err(SizeError::BadNumber("-1G".to_string()))
        );
        assert_eq!(
            "1.5G".parse::<Size>(),
            Err(SizeError::BadSuffix(".5G".to_string()))
        );
        assert_eq!(
            "10X".parse::<Size>(),
            Err(SizeError::BadSuffix("X".to_string()))
        );
        assert_eq!(
            "1 G".parse::<Size>(),
            Err(SizeError::BadSuffix(" G".to_string()))
        );
    }

    #[test]
    fn test_size_parse_overflow_error() {
        assert!(matches!(
            "17179869184G".parse::<Size>(),
            Err(SizeError::Overflow(_))
        ));
        assert!(matches!(
            "99999999999999999999".parse::<Size>(),
            Err(SizeError::Overflow(_))
        ));
    }

    #[test]
    fn test_size_whole_mib_only_for_multiples() {
        assert_eq!(Size::from_mib(256).whole_mib(), Some(256));
        assert_eq!(Size(1500).whole_mib(), None);
    }

    #[test]
    fn test_size_display_largest_exact_unit() {
        assert_eq!(Size::from_mib(256).to_string(), "256M");
        assert_eq!(Size::from_mib(1024).to_string(), "1G");
        assert_eq!(Size::from_mib(1536).to_string(), "1536M");
        assert_eq!(Size(1500).to_string(), "1500");
        assert_eq!(Size(0).to_string(), "0");
    }
}
