//! Sandbox and log limits: cpu, memory and byte quantities written as Kubernetes does
//! (`500m`, `512Mi`).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::ManifestError;

const CPU_HINT: &str = "use cores or millicores greater than 0, like 1, 0.5 or 500m";
const MEMORY_HINT: &str = "use bytes or a unit, greater than 0, like 512Mi, 1Gi or 100M";
const LOG_LIMIT_HINT: &str = "use bytes or a unit, greater than 0, like 1Mi, 512Ki or 4Mi";

/// Log text an execution keeps when `spec.logLimit` is not set: 1 MiB.
pub const DEFAULT_LOG_LIMIT_BYTES: u64 = 1 << 20;

/// Log text an agent keeps over all its executions, oldest dropped first; also the largest
/// `spec.logLimit`: 64 MiB.
pub const MAX_LOG_LIMIT_BYTES: u64 = 64 << 20;

/// Sandbox limits of an agent (`spec.resources`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resources {
    /// CPU limit; default `1`.
    #[serde(default = "Cpu::default_limit")]
    pub cpu: Cpu,
    /// Memory limit; default `512Mi`.
    #[serde(default = "Memory::default_limit")]
    pub memory: Memory,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu: Cpu::default_limit(),
            memory: Memory::default_limit(),
        }
    }
}

/// A CPU quantity greater than zero, kept as the user wrote it.
///
/// ```
/// use clrk_api::Cpu;
/// assert_eq!("500m".parse::<Cpu>().unwrap().millis(), 500);
/// assert_eq!("0.5".parse::<Cpu>().unwrap().millis(), 500);
/// assert_eq!("2".parse::<Cpu>().unwrap().to_string(), "2");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Cpu {
    text: String,
    millis: u64,
}

impl Cpu {
    /// The default limit, one core.
    pub fn default_limit() -> Cpu {
        Cpu {
            text: "1".to_owned(),
            millis: 1000,
        }
    }

    /// Thousandths of a core, rounded up.
    pub fn millis(&self) -> u64 {
        self.millis
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Cpu {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (number, scale) = match s.strip_suffix('m') {
            Some(number) => (number, 1),
            None => (s, 1000),
        };
        let millis = ceil_decimal(number, scale)
            .and_then(|m| u64::try_from(m).ok())
            .filter(|m| *m > 0)
            .ok_or_else(|| refused(s, "cpu", CPU_HINT))?;
        Ok(Cpu {
            text: s.to_owned(),
            millis,
        })
    }
}

/// A memory quantity greater than zero, kept as the user wrote it.
///
/// ```
/// use clrk_api::Memory;
/// assert_eq!("512Mi".parse::<Memory>().unwrap().bytes(), 512 * 1024 * 1024);
/// assert_eq!("100M".parse::<Memory>().unwrap().bytes(), 100_000_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Memory {
    text: String,
    bytes: u64,
}

impl Memory {
    /// The default limit, 512 MiB.
    pub fn default_limit() -> Memory {
        Memory {
            text: "512Mi".to_owned(),
            bytes: 512 << 20,
        }
    }

    /// Bytes, rounded up.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for Memory {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Memory {
            text: s.to_owned(),
            bytes: byte_quantity(s).ok_or_else(|| refused(s, "memory", MEMORY_HINT))?,
        })
    }
}

/// Bytes of log text one execution (or daemon run) keeps (`spec.logLimit`), greater than
/// zero, kept as the user wrote it.
///
/// ```
/// use clrk_api::LogLimit;
/// assert_eq!("4Mi".parse::<LogLimit>().unwrap().bytes(), 4 << 20);
/// assert!("4MB".parse::<LogLimit>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LogLimit {
    text: String,
    bytes: u64,
}

impl LogLimit {
    /// Bytes, rounded up.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The text as written in the manifest.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl FromStr for LogLimit {
    type Err = ManifestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(LogLimit {
            text: s.to_owned(),
            bytes: byte_quantity(s).ok_or_else(|| refused(s, "byte", LOG_LIMIT_HINT))?,
        })
    }
}

/// Bytes of a quantity like `512Mi` or `100M`, rounded up; `None` unless greater than 0.
fn byte_quantity(s: &str) -> Option<u64> {
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    memory_unit(suffix)
        .and_then(|scale| ceil_decimal(number, scale))
        .and_then(|b| u64::try_from(b).ok())
        .filter(|b| *b > 0)
}

fn memory_unit(suffix: &str) -> Option<u128> {
    Some(match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "P" => 1_000_000_000_000_000,
        "E" => 1_000_000_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "Pi" => 1 << 50,
        "Ei" => 1 << 60,
        _ => return None,
    })
}

fn refused(input: &str, what: &'static str, hint: &str) -> ManifestError {
    ManifestError::InvalidQuantity {
        input: input.to_owned(),
        what,
        reason: hint.to_owned(),
    }
}

/// `number × scale` rounded up, for a plain decimal like `0.5`; `None` if not one.
fn ceil_decimal(number: &str, scale: u128) -> Option<u128> {
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() && fraction.is_empty() || !all_digits(whole) || !all_digits(fraction) {
        return None;
    }
    let whole_value = if whole.is_empty() {
        0
    } else {
        whole.parse::<u128>().ok()?
    };
    // Twenty fraction digits are far beyond any meaningful limit and keep the maths in u128.
    if fraction.len() > 20 {
        return None;
    }
    let fraction_value = if fraction.is_empty() {
        0
    } else {
        let numerator = fraction.parse::<u128>().ok()?.checked_mul(scale)?;
        numerator.div_ceil(10u128.pow(fraction.len() as u32))
    };
    whole_value.checked_mul(scale)?.checked_add(fraction_value)
}

macro_rules! quantity_serde {
    ($ty:ident, $expecting:literal) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.text)
            }
        }

        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.text)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct QuantityVisitor;

                impl QuantityVisitor {
                    fn parse<E: de::Error>(s: &str) -> Result<$ty, E> {
                        s.parse::<$ty>().map_err(E::custom)
                    }
                }

                impl Visitor<'_> for QuantityVisitor {
                    type Value = $ty;

                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }

                    fn visit_str<E: de::Error>(self, s: &str) -> Result<$ty, E> {
                        Self::parse(s)
                    }

                    // YAML reads `cpu: 2` or `memory: 1000000` as numbers.
                    fn visit_u64<E: de::Error>(self, n: u64) -> Result<$ty, E> {
                        Self::parse(&n.to_string())
                    }

                    fn visit_i64<E: de::Error>(self, n: i64) -> Result<$ty, E> {
                        Self::parse(&n.to_string())
                    }

                    fn visit_f64<E: de::Error>(self, n: f64) -> Result<$ty, E> {
                        Self::parse(&n.to_string())
                    }
                }

                deserializer.deserialize_any(QuantityVisitor)
            }
        }
    };
}

quantity_serde!(Cpu, "a cpu quantity like 1, 0.5 or 500m");
quantity_serde!(Memory, "a memory quantity like 512Mi, 1Gi or 100M");
quantity_serde!(LogLimit, "a byte quantity like 1Mi or 4Mi");

#[cfg(test)]
mod tests {
    use super::*;

    fn millis(s: &str) -> u64 {
        s.parse::<Cpu>().unwrap().millis()
    }

    fn bytes(s: &str) -> u64 {
        s.parse::<Memory>().unwrap().bytes()
    }

    #[test]
    fn cpu_in_cores_and_millicores() {
        assert_eq!(millis("1"), 1000);
        assert_eq!(millis("500m"), 500);
        assert_eq!(millis("0.5"), 500);
        assert_eq!(millis("2"), 2000);
        assert_eq!(millis("1.25"), 1250);
        assert_eq!(millis("0.0001"), 1, "a sliver of a core rounds up to 1m");
    }

    #[test]
    fn cpu_refuses_zero_and_garbage() {
        for bad in ["0", "0m", "", "m", "-1", "1 core", "abc", "1.2.3"] {
            let err = bad.parse::<Cpu>().unwrap_err().to_string();
            assert!(err.contains("like 1, 0.5 or 500m"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn memory_units() {
        assert_eq!(bytes("512Mi"), 512 * 1024 * 1024);
        assert_eq!(bytes("1Gi"), 1 << 30);
        assert_eq!(bytes("100M"), 100_000_000);
        assert_eq!(bytes("1000000"), 1_000_000);
        assert_eq!(bytes("1G"), 1_000_000_000);
        assert_eq!(bytes("128Ki"), 128 * 1024);
        assert_eq!(bytes("1.5Gi"), 3 << 29);
        assert_eq!(bytes("1k"), 1000);
    }

    #[test]
    fn memory_refuses_zero_garbage_and_overflow() {
        for bad in ["0", "0Mi", "", "Mi", "1 Gi", "1GB", "-1Gi", "100000Ei"] {
            let err = bad.parse::<Memory>().unwrap_err().to_string();
            assert!(err.contains("like 512Mi, 1Gi or 100M"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn keeps_the_users_text() {
        let r: Resources =
            serde_json::from_value(serde_json::json!({"cpu": 0.5, "memory": "1Gi"})).unwrap();
        assert_eq!(r.cpu.millis(), 500);
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            serde_json::json!({"cpu": "0.5", "memory": "1Gi"})
        );
    }

    #[test]
    fn defaults_fill_missing_limits() {
        let r: Resources = serde_json::from_value(serde_json::json!({"cpu": "2"})).unwrap();
        assert_eq!(r.cpu.millis(), 2000);
        assert_eq!(r.memory.as_str(), "512Mi");
        assert_eq!(Resources::default().cpu.as_str(), "1");
    }
}
