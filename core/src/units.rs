//! Value syntaxes shared by many keys: byte sizes and durations.
//!
//! Sizes are an integer (bytes) or a string of an integer and a unit:
//! `B`; `KB`, `MB`, `GB`, `TB` (powers of 1000); `KiB`, `MiB`, `GiB`, `TiB`
//! (powers of 1024). Units are case-insensitive and may follow a space:
//! `"1MB"` is 1 000 000 bytes, `"1 MiB"` is 1 048 576. Fractions are not
//! accepted (`"1536KiB"`, not `"1.5MiB"`).
//!
//! Durations are strings in humantime syntax: `"500ms"`, `"10s"`, `"5m"`,
//! `"2h"`, `"7d"`, `"1h 30m"`. A bare integer is refused rather than guessed
//! at (seconds? milliseconds?). Keys that can be switched off take one word
//! instead of a duration, each the word that reads right for the key:
//! `"never"` for expiries, `"off"` for intervals and caps.

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// Parses a size string such as `"64KB"`, `"1MiB"` or `"4096"` into bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let digits_end = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "invalid size \"{text}\": expected a number of bytes, optionally with a unit, such as \"64KB\" or \"1MiB\""
        ));
    }
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "invalid size \"{text}\": fractions are not supported, use a smaller unit (e.g. \"1536KiB\")"
        ));
    }
    let multiplier: u64 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => {
            return Err(format!(
                "invalid size \"{text}\": unknown unit \"{}\", expected one of B, KB, MB, GB, TB (powers of 1000), KiB, MiB, GiB, TiB (powers of 1024)",
                unit.trim_start()
            ))
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| format!("invalid size \"{text}\": too large"))
}

/// serde `deserialize_with` for a size in bytes.
pub fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    deserializer.deserialize_any(SizeVisitor)
}

struct SizeVisitor;

impl Visitor<'_> for SizeVisitor {
    type Value = u64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a size: a number of bytes, or a string such as \"64KB\" or \"1MiB\"")
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
        u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
        Ok(v)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
        parse_size(v).map_err(E::custom)
    }
}

/// The words that switch a duration off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffWord {
    /// The duration cannot be switched off.
    None,
    /// `"never"`: something never expires.
    Never,
    /// `"off"`: something periodic or a cap is switched off.
    Off,
}

impl OffWord {
    fn word(self) -> Option<&'static str> {
        match self {
            OffWord::None => None,
            OffWord::Never => Some("never"),
            OffWord::Off => Some("off"),
        }
    }
}

/// Parses a humantime duration such as `"10s"` or `"2h"`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration \"{text}\": {err} (write e.g. \"10s\", \"5m\", \"2h\" or \"7d\")"))
}

/// serde `deserialize_with` for a duration that is always on.
pub fn duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer
        .deserialize_any(DurationVisitor(OffWord::None))?
        .ok_or_else(|| de::Error::custom("this duration cannot be switched off"))
}

/// serde `deserialize_with` for a duration or `"never"` (`None`).
pub fn duration_or_never<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(DurationVisitor(OffWord::Never))
}

/// serde `deserialize_with` for a duration or `"off"` (`None`).
pub fn duration_or_off<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    deserializer.deserialize_any(DurationVisitor(OffWord::Off))
}

struct DurationVisitor(OffWord);

impl Visitor<'_> for DurationVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.word() {
            None => f.write_str("a duration such as \"10s\", \"5m\" or \"2h\""),
            Some(word) => write!(f, "a duration such as \"10s\", \"5m\" or \"2h\", or \"{word}\""),
        }
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Duration>, E> {
        let accepted = self.0.word();
        if Some(v) == accepted {
            return Ok(None);
        }
        if v == "never" || v == "off" {
            return Err(E::custom(match accepted {
                None => format!("\"{v}\" is not accepted here: this duration cannot be switched off"),
                Some(word) => format!("\"{v}\" is not accepted here, write \"{word}\""),
            }));
        }
        parse_duration(v).map(Some).map_err(E::custom)
    }
}
