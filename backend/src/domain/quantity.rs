//! Kubernetes resource quantities (`500m`, `1.5Gi`, `2e3`), parsed, printed,
//! compared and added the way `k8s.io/apimachinery/pkg/api/resource` does.
//!
//! A [`Quantity`] is a whole number of nano-units (10⁻⁹) in an `i128`, plus
//! the [`Format`] Kubernetes would print it in. Kubernetes keeps nothing finer
//! than 1n either: it rounds finer input away from zero to the next nano-unit
//! (`0.1n` is `1n`, `-1.1n` is `-2n`). We round the same way rather than
//! reject, so a value read back from a cluster means the same here as there.
//!
//! Magnitudes must stay below 10²¹ (`1000E`, about 867Ei). Kubernetes accepts
//! larger decimal values, but cannot print them faithfully (`1000E` prints as
//! `1`), so they could not round-trip through a cluster anyway; we refuse them,
//! on parsing and in arithmetic, instead of wrapping or losing digits. Binary
//! values are capped at 2⁶³−1 units on parsing, as Kubernetes caps them.
//!
//! Where we differ from Kubernetes, on purpose:
//! - A number needs a digit: Kubernetes reads `+`, `-`, `.` and `e3` as 0.
//! - An exponent must fit in 32 bits, where Kubernetes wraps it
//!   (`1e4294967296` is 1 there).
//! - [`Display`](fmt::Display) always prints the canonical form. Right after
//!   parsing, Kubernetes echoes some spellings it takes for canonical (`+1`,
//!   `01`, `1.500`, `1E3`); after any arithmetic it prints the canonical form.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Nano-units in one unit.
const NANOS_PER_UNIT: i128 = 1_000_000_000;

/// Every quantity's magnitude in nano-units stays below this: 10²¹ units.
const LIMIT_NANOS: i128 = 10_i128.pow(30);

/// Kubernetes caps a parsed binary quantity at the largest int64.
const BINARY_CAP_NANOS: i128 = i64::MAX as i128 * NANOS_PER_UNIT;

/// Decimal SI suffixes and the power of ten each stands for.
const DECIMAL_SUFFIXES: [(&str, i64); 10] = [
    ("n", -9),
    ("u", -6),
    ("m", -3),
    ("", 0),
    ("k", 3),
    ("M", 6),
    ("G", 9),
    ("T", 12),
    ("P", 15),
    ("E", 18),
];

/// Binary SI suffixes, indexed by the power of 1024 each stands for.
const BINARY_SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];

/// How Kubernetes prints a quantity. Parsing takes it from the suffix;
/// arithmetic keeps the left operand's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Powers of 1024: `Ki`, `Mi`, … `Ei`. Values below 1024 or with a
    /// fraction print in [`Format::DecimalSI`].
    BinarySI,
    /// Powers of 1000: `n`, `u`, `m`, none, `k`, `M`, `G`, `T`, `P`, `E`.
    DecimalSI,
    /// `e` and a multiple of three: `12e6`, `1500e-6`.
    DecimalExponent,
}

/// Why a string is not a quantity, in words for the person who typed it.
/// Each variant holds the offending input, or the part of it at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string is empty.
    #[error("a quantity cannot be empty; write a number such as 2, 500m or 1.5Gi")]
    Empty,
    /// Kubernetes allows no spaces, not even around the quantity.
    #[error("\"{0}\" contains whitespace; write the quantity without spaces, such as 1.5Gi")]
    Whitespace(String),
    /// No digits, a second decimal point or sign, or other stray characters.
    #[error(
        "\"{0}\" is not a number: write digits with an optional sign and at most one decimal point, then an optional suffix, such as 2, -1.5, .5 or 100m"
    )]
    InvalidNumber(String),
    /// The suffix after the number is none Kubernetes knows (`Gb`, `gi`, `K`).
    #[error(
        "unknown suffix \"{0}\"; use Ki, Mi, Gi, Ti, Pi, Ei (powers of 1024), n, u, m, k, M, G, T, P, E (powers of 1000) or an exponent such as e3"
    )]
    UnknownSuffix(String),
    /// A suffix starting with `e` or `E` that is not a whole-number exponent.
    #[error("invalid exponent \"{0}\"; write e or E and a whole number, such as 1e3 or 5E-2")]
    InvalidExponent(String),
    /// An exponent beyond 32 bits, which Kubernetes would silently wrap.
    #[error("exponent \"{0}\" is out of range")]
    ExponentOutOfRange(String),
    /// A magnitude of 10²¹ or more.
    #[error("\"{0}\" is too large; a quantity must be smaller than 1000E (10^21) in magnitude")]
    TooLarge(String),
    /// Refused by [`Quantity::parse_non_negative`].
    #[error("\"{0}\" is negative; the amount must be zero or more")]
    Negative(String),
}

/// An exact Kubernetes resource quantity. Equality, order and hash go by
/// numeric value alone, so `1Gi == 1073741824` and `1000m == 1`.
#[derive(Debug, Clone)]
pub struct Quantity {
    nanos: i128,
    format: Format,
}

impl Quantity {
    /// Zero, as Kubernetes parses `0`.
    pub fn zero() -> Self {
        Self {
            nanos: 0,
            format: Format::DecimalSI,
        }
    }

    /// Parses `s` and refuses negative values, as quota amounts must not be.
    pub fn parse_non_negative(s: &str) -> Result<Self, QuantityError> {
        let q: Self = s.parse()?;
        if q.is_negative() {
            return Err(QuantityError::Negative(s.to_owned()));
        }
        Ok(q)
    }

    /// The format [`Display`](fmt::Display) prints in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The exact value in billionths of a unit.
    pub fn nanos(&self) -> i128 {
        self.nanos
    }

    /// The quantity of `nanos` billionths, printed in `format`; `None` at 10²¹ units or more.
    pub fn from_nanos(nanos: i128, format: Format) -> Option<Self> {
        (nanos.abs() < LIMIT_NANOS).then_some(Self { nanos, format })
    }

    /// Whether the value is below zero (`-0` is not).
    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Whether the value is zero, whatever its format.
    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    /// Whether the value has no fractional part (`2`, `1Ki`, `3000m`).
    /// The value as a float, for drawing proportions; never for comparisons.
    pub fn approx_f64(&self) -> f64 {
        self.nanos as f64 / 1e9
    }

    pub fn is_whole(&self) -> bool {
        self.nanos % NANOS_PER_UNIT == 0
    }

    /// Whether `count` items fit within this quantity, that is `count <= self`.
    pub fn fits_count(&self, count: usize) -> bool {
        // Any usize times 10^9 fits in an i128.
        i128::try_from(count).is_ok_and(|count| count * NANOS_PER_UNIT <= self.nanos)
    }

    /// `self + other`, or `None` if the magnitude would reach 10²¹.
    pub fn checked_add(&self, other: &Quantity) -> Option<Quantity> {
        self.arithmetic_result(other, self.nanos + other.nanos)
    }

    /// `self - other`, or `None` if the magnitude would reach 10²¹.
    pub fn checked_sub(&self, other: &Quantity) -> Option<Quantity> {
        self.arithmetic_result(other, self.nanos - other.nanos)
    }

    /// Both operands are below 10³⁰ nano-units, so `nanos` cannot have
    /// overflowed `i128`.
    fn arithmetic_result(&self, other: &Quantity, nanos: i128) -> Option<Quantity> {
        // Kubernetes' Add and Sub keep the left operand's format unless it is zero.
        let format = if self.is_zero() {
            other.format
        } else {
            self.format
        };
        (nanos.abs() < LIMIT_NANOS).then_some(Quantity { nanos, format })
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(s: &str) -> Result<Self, QuantityError> {
        if s.is_empty() {
            return Err(QuantityError::Empty);
        }
        if s.contains(char::is_whitespace) {
            return Err(QuantityError::Whitespace(s.to_owned()));
        }
        let (negative, unsigned) = match s.as_bytes()[0] {
            b'-' => (true, &s[1..]),
            b'+' => (false, &s[1..]),
            _ => (false, s),
        };
        let (whole, rest) = split_digits(unsigned);
        let (fraction, suffix) = match rest.strip_prefix('.') {
            Some(after_point) => split_digits(after_point),
            None => ("", rest),
        };
        let suffix_shaped = suffix.is_empty() || suffix.starts_with(char::is_alphabetic);
        if (whole.is_empty() && fraction.is_empty()) || !suffix_shaped {
            return Err(QuantityError::InvalidNumber(s.to_owned()));
        }

        let (format, pow10, pow1024) = interpret_suffix(suffix)?;
        let digits: Vec<u8> = whole
            .bytes()
            .chain(fraction.bytes())
            .map(|b| b - b'0')
            .collect();
        let digits = times_power_of_1024(&digits, pow1024);
        // Kubernetes does this scale arithmetic in 32 bits and wraps; refuse instead.
        let scale = pow10 - fraction.len() as i64;
        if scale < -i64::from(i32::MAX) {
            return Err(QuantityError::ExponentOutOfRange(suffix.to_owned()));
        }
        let magnitude = match (format, nanos_rounded_up(&digits, scale + 9)) {
            (Format::BinarySI, nanos) => {
                nanos.map_or(BINARY_CAP_NANOS, |n| n.min(BINARY_CAP_NANOS))
            }
            (_, Some(nanos)) => nanos,
            (_, None) => return Err(QuantityError::TooLarge(s.to_owned())),
        };
        // Kubernetes parses a binary fraction of one unit as decimal, and keeps
        // that format for later arithmetic.
        let format = if format == Format::BinarySI && (1..NANOS_PER_UNIT).contains(&magnitude) {
            Format::DecimalSI
        } else {
            format
        };
        let nanos = if negative { -magnitude } else { magnitude };
        Ok(Quantity { nanos, format })
    }
}

/// Splits `s` after its leading ASCII digits.
fn split_digits(s: &str) -> (&str, &str) {
    s.split_at(s.bytes().take_while(u8::is_ascii_digit).count())
}

/// The format a suffix selects, and the power of ten and of 1024 it multiplies by.
fn interpret_suffix(suffix: &str) -> Result<(Format, i64, u32), QuantityError> {
    if let Some(&(_, pow10)) = DECIMAL_SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Ok((Format::DecimalSI, pow10, 0));
    }
    if let Some(pow1024) = BINARY_SUFFIXES[1..].iter().position(|s| *s == suffix) {
        return Ok((Format::BinarySI, 0, pow1024 as u32 + 1));
    }
    // `E` alone is exa, matched above; with digits after it, it is an exponent.
    let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
        return Err(QuantityError::UnknownSuffix(suffix.to_owned()));
    };
    let unsigned = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    if unsigned.is_empty() || !unsigned.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QuantityError::InvalidExponent(suffix.to_owned()));
    }
    match exponent.parse::<i32>() {
        Ok(pow10) => Ok((Format::DecimalExponent, i64::from(pow10), 0)),
        Err(_) => Err(QuantityError::ExponentOutOfRange(suffix.to_owned())),
    }
}

/// Multiplies a big-endian list of decimal digits by 1024^`power`.
fn times_power_of_1024(digits: &[u8], power: u32) -> Vec<u8> {
    if power == 0 {
        return digits.to_vec();
    }
    let factor = 1_u128 << (10 * power);
    let mut product = Vec::with_capacity(digits.len() + 19);
    let mut carry = 0_u128;
    for &digit in digits.iter().rev() {
        let value = u128::from(digit) * factor + carry;
        product.push((value % 10) as u8);
        carry = value / 10;
    }
    while carry > 0 {
        product.push((carry % 10) as u8);
        carry /= 10;
    }
    product.reverse();
    product
}

/// `digits × 10^shift`, rounded away from zero to a whole number, or `None`
/// when that reaches [`LIMIT_NANOS`].
fn nanos_rounded_up(digits: &[u8], shift: i64) -> Option<i128> {
    let Some(first) = digits.iter().position(|&d| d != 0) else {
        return Some(0);
    };
    let digits = &digits[first..];
    // Digits left of the point after shifting; 31 of them make at least 10^30.
    let whole_len = digits.len() as i64 + shift;
    if whole_len > 30 {
        return None;
    }
    let (whole, dropped) = digits.split_at(whole_len.clamp(0, digits.len() as i64) as usize);
    let mut nanos = whole.iter().fold(0_i128, |n, &d| n * 10 + i128::from(d));
    if shift > 0 {
        nanos *= 10_i128.pow(shift as u32);
    }
    if dropped.iter().any(|&d| d != 0) {
        nanos += 1;
    }
    (nanos < LIMIT_NANOS).then_some(nanos)
}

impl fmt::Display for Quantity {
    /// Prints what Kubernetes' `Quantity.String()` prints for the value in its format.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.nanos == 0 {
            return f.write_str("0");
        }
        let whole_units = self.nanos % NANOS_PER_UNIT == 0;
        if self.format == Format::BinarySI
            && whole_units
            && self.nanos.abs() >= 1024 * NANOS_PER_UNIT
        {
            let mut units = self.nanos / NANOS_PER_UNIT;
            let mut power = 0;
            // Below 10^21 there are at most six factors of 1024 (1024^7 > 10^21).
            while units % 1024 == 0 && power < 6 {
                units /= 1024;
                power += 1;
            }
            return write!(f, "{units}{}", BINARY_SUFFIXES[power]);
        }
        // The smallest mantissa whose exponent is a multiple of three; below
        // 10^21 that exponent lies between -9 and 18, each with a suffix.
        let (mut mantissa, mut exponent) = (self.nanos, -9_i64);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        while exponent % 3 != 0 {
            mantissa *= 10;
            exponent -= 1;
        }
        match self.format {
            Format::DecimalExponent if exponent != 0 => write!(f, "{mantissa}e{exponent}"),
            Format::DecimalExponent => write!(f, "{mantissa}"),
            Format::BinarySI | Format::DecimalSI => {
                let suffix = DECIMAL_SUFFIXES
                    .iter()
                    .find(|(_, p)| *p == exponent)
                    .map_or("", |(s, _)| s);
                write!(f, "{mantissa}{suffix}")
            }
        }
    }
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.nanos == other.nanos
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.nanos.cmp(&other.nanos)
    }
}

impl Hash for Quantity {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.nanos.hash(state);
    }
}

impl Serialize for Quantity {
    /// As the canonical string, the form Kubernetes stores.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    /// From a string, or from a whole number as Kubernetes also accepts in JSON.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(QuantityVisitor)
    }
}

struct QuantityVisitor;

impl Visitor<'_> for QuantityVisitor {
    type Value = Quantity;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Kubernetes quantity such as \"1.5Gi\" or \"500m\", or a whole number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
        v.parse().map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
        self.visit_str(&v.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::Format::{BinarySI, DecimalExponent, DecimalSI};
    use super::*;

    fn q(s: &str) -> Quantity {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    // Test vectors produced by the real implementation: k8s.io/apimachinery
    // v0.37.2 (gopkg.in/inf.v0 v0.9.1), Go 1.26. To regenerate, make a Go
    // module that requires k8s.io/apimachinery and, for each input, print
    //     q, err := resource.ParseQuantity(in)   // err != nil: None
    //     q.String(), canonical(q), q.Format, nanos(q)
    // where canonical(q) is q.String() after q.Neg(); q.Neg() (which clears
    // the spelling Kubernetes remembers from parsing) and nanos(q) is
    //     new(inf.Dec).Mul(q.AsDec(), inf.NewDec(1e9, 0)).Round(…, 0, inf.RoundExact).UnscaledBig()
    // and, for each pair, with a, b := resource.MustParse(l), resource.MustParse(r):
    //     a.Cmp(b); sum := a.DeepCopy(); sum.Add(b); diff := a.DeepCopy(); diff.Sub(b)
    //     sum.String(), sum.Format, diff.String(), diff.Format
    // quoting strings with strconv.Quote, which yields Rust string literals.

    /// What Kubernetes makes of an input: `None` if it rejects it, else its
    /// `String()` right after parsing, its canonical `String()`, its format
    /// and its value in nano-units.
    type Parsed = Option<(&'static str, &'static str, Format, &'static str)>;

    #[rustfmt::skip]
    const PARSED: &[(&str, Parsed)] = &[
    ("0", Some(("0", "0", DecimalSI, "0"))),
    ("1", Some(("1", "1", DecimalSI, "1000000000"))),
    ("-1", Some(("-1", "-1", DecimalSI, "-1000000000"))),
    ("+1", Some(("+1", "1", DecimalSI, "1000000000"))),
    (".5", Some(("500m", "500m", DecimalSI, "500000000"))),
    ("5.", Some(("5.", "5", DecimalSI, "5000000000"))),
    ("-.5", Some(("-500m", "-500m", DecimalSI, "-500000000"))),
    ("+.5", Some(("500m", "500m", DecimalSI, "500000000"))),
    ("1.", Some(("1.", "1", DecimalSI, "1000000000"))),
    ("0.5", Some(("500m", "500m", DecimalSI, "500000000"))),
    ("1.5", Some(("1500m", "1500m", DecimalSI, "1500000000"))),
    ("-1.5", Some(("-1500m", "-1500m", DecimalSI, "-1500000000"))),
    ("1.0", Some(("1", "1", DecimalSI, "1000000000"))),
    ("1.000", Some(("1", "1", DecimalSI, "1000000000"))),
    ("1.500", Some(("1.500", "1500m", DecimalSI, "1500000000"))),
    ("1.234", Some(("1.234", "1234m", DecimalSI, "1234000000"))),
    ("01", Some(("01", "1", DecimalSI, "1000000000"))),
    ("007", Some(("007", "7", DecimalSI, "7000000000"))),
    ("00", Some(("0", "0", DecimalSI, "0"))),
    ("0.0", Some(("0", "0", DecimalSI, "0"))),
    ("-0", Some(("0", "0", DecimalSI, "0"))),
    ("-0.0Gi", Some(("0", "0", BinarySI, "0"))),
    ("10", Some(("10", "10", DecimalSI, "10000000000"))),
    ("100", Some(("100", "100", DecimalSI, "100000000000"))),
    ("1000", Some(("1k", "1k", DecimalSI, "1000000000000"))),
    ("1001", Some(("1001", "1001", DecimalSI, "1001000000000"))),
    ("1023", Some(("1023", "1023", DecimalSI, "1023000000000"))),
    ("1024", Some(("1024", "1024", DecimalSI, "1024000000000"))),
    ("1025", Some(("1025", "1025", DecimalSI, "1025000000000"))),
    ("1536", Some(("1536", "1536", DecimalSI, "1536000000000"))),
    ("2048", Some(("2048", "2048", DecimalSI, "2048000000000"))),
    ("-1023", Some(("-1023", "-1023", DecimalSI, "-1023000000000"))),
    ("-1024", Some(("-1024", "-1024", DecimalSI, "-1024000000000"))),
    ("1048576", Some(("1048576", "1048576", DecimalSI, "1048576000000000"))),
    ("100m", Some(("100m", "100m", DecimalSI, "100000000"))),
    ("1000m", Some(("1", "1", DecimalSI, "1000000000"))),
    ("1500m", Some(("1500m", "1500m", DecimalSI, "1500000000"))),
    ("1.5m", Some(("1500u", "1500u", DecimalSI, "1500000"))),
    ("0.1m", Some(("100u", "100u", DecimalSI, "100000"))),
    ("1m", Some(("1m", "1m", DecimalSI, "1000000"))),
    ("0m", Some(("0", "0", DecimalSI, "0"))),
    ("1n", Some(("1n", "1n", DecimalSI, "1"))),
    ("0.1n", Some(("1n", "1n", DecimalSI, "1"))),
    ("-0.1n", Some(("-1n", "-1n", DecimalSI, "-1"))),
    ("1.1n", Some(("2n", "2n", DecimalSI, "2"))),
    ("-1.1n", Some(("-2n", "-2n", DecimalSI, "-2"))),
    ("1u", Some(("1u", "1u", DecimalSI, "1000"))),
    ("5e-9", Some(("5e-9", "5e-9", DecimalExponent, "5"))),
    ("0.000000001", Some(("1n", "1n", DecimalSI, "1"))),
    ("0.0000000001", Some(("1n", "1n", DecimalSI, "1"))),
    ("1k", Some(("1k", "1k", DecimalSI, "1000000000000"))),
    ("1K", None),
    ("1M", Some(("1M", "1M", DecimalSI, "1000000000000000"))),
    ("1G", Some(("1G", "1G", DecimalSI, "1000000000000000000"))),
    ("1T", Some(("1T", "1T", DecimalSI, "1000000000000000000000"))),
    ("1P", Some(("1P", "1P", DecimalSI, "1000000000000000000000000"))),
    ("1E", Some(("1E", "1E", DecimalSI, "1000000000000000000000000000"))),
    ("1.500k", Some(("1.500k", "1500", DecimalSI, "1500000000000"))),
    ("1000E", Some(("1", "1", DecimalSI, "1000000000000000000000000000000"))),
    ("1EE", None),
    ("1kk", None),
    ("1mi", None),
    ("1i", None),
    ("1e3", Some(("1e3", "1e3", DecimalExponent, "1000000000000"))),
    ("1E3", Some(("1E3", "1e3", DecimalExponent, "1000000000000"))),
    ("2e3", Some(("2e3", "2e3", DecimalExponent, "2000000000000"))),
    ("1e03", Some(("1e03", "1e3", DecimalExponent, "1000000000000"))),
    ("1e+03", Some(("1e+03", "1e3", DecimalExponent, "1000000000000"))),
    ("1e+3", Some(("1e+3", "1e3", DecimalExponent, "1000000000000"))),
    ("1e-3", Some(("1e-3", "1e-3", DecimalExponent, "1000000"))),
    ("1e-1", Some(("100e-3", "100e-3", DecimalExponent, "100000000"))),
    ("1e1", Some(("10", "10", DecimalExponent, "10000000000"))),
    ("1e2", Some(("100", "100", DecimalExponent, "100000000000"))),
    ("12e6", Some(("12e6", "12e6", DecimalExponent, "12000000000000000"))),
    ("1E6", Some(("1E6", "1e6", DecimalExponent, "1000000000000000"))),
    ("1.5e-3", Some(("1500e-6", "1500e-6", DecimalExponent, "1500000"))),
    ("0e0", Some(("0", "0", DecimalExponent, "0"))),
    ("1e-9", Some(("1e-9", "1e-9", DecimalExponent, "1"))),
    ("1e-10", Some(("1e-9", "1e-9", DecimalExponent, "1"))),
    ("1e-100", Some(("1e-9", "1e-9", DecimalExponent, "1"))),
    ("1e18", Some(("1e18", "1e18", DecimalExponent, "1000000000000000000000000000"))),
    ("1e19", Some(("10e18", "10e18", DecimalExponent, "10000000000000000000000000000"))),
    ("1e21", Some(("1e21", "1e21", DecimalExponent, "1000000000000000000000000000000"))),
    ("1e28", Some(("10e27", "10e27", DecimalExponent, "10000000000000000000000000000000000000"))),
    ("1e29", Some(("100e27", "100e27", DecimalExponent, "100000000000000000000000000000000000000"))),
    ("1e100", Some(("10e99", "10e99", DecimalExponent, "10000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"))),
    ("1e4294967296", Some(("1e4294967296", "1", DecimalExponent, "1000000000"))),
    ("1e99999999999999999999", None),
    ("0.5Gi", Some(("512Mi", "512Mi", BinarySI, "536870912000000000"))),
    ("1.5Gi", Some(("1536Mi", "1536Mi", BinarySI, "1610612736000000000"))),
    ("-1.5Gi", Some(("-1536Mi", "-1536Mi", BinarySI, "-1610612736000000000"))),
    ("0.5Ki", Some(("512", "512", BinarySI, "512000000000"))),
    ("1.5Ki", Some(("1536", "1536", BinarySI, "1536000000000"))),
    ("0.0001Ki", Some(("102400u", "102400u", DecimalSI, "102400000"))),
    ("0Ki", Some(("0", "0", BinarySI, "0"))),
    ("1Ki", Some(("1Ki", "1Ki", BinarySI, "1024000000000"))),
    ("+1Ki", Some(("+1Ki", "1Ki", BinarySI, "1024000000000"))),
    ("01Ki", Some(("01Ki", "1Ki", BinarySI, "1024000000000"))),
    ("8Ki", Some(("8Ki", "8Ki", BinarySI, "8192000000000"))),
    ("1000Ki", Some(("1000Ki", "1000Ki", BinarySI, "1024000000000000"))),
    ("1024Ki", Some(("1Mi", "1Mi", BinarySI, "1048576000000000"))),
    ("1Mi", Some(("1Mi", "1Mi", BinarySI, "1048576000000000"))),
    ("1000Mi", Some(("1000Mi", "1000Mi", BinarySI, "1048576000000000000"))),
    ("1Gi", Some(("1Gi", "1Gi", BinarySI, "1073741824000000000"))),
    ("-1Gi", Some(("-1Gi", "-1Gi", BinarySI, "-1073741824000000000"))),
    ("1Ti", Some(("1Ti", "1Ti", BinarySI, "1099511627776000000000"))),
    ("1Pi", Some(("1Pi", "1Pi", BinarySI, "1125899906842624000000000"))),
    ("1Ei", Some(("1Ei", "1Ei", BinarySI, "1152921504606846976000000000"))),
    ("4Ei", Some(("4Ei", "4Ei", BinarySI, "4611686018427387904000000000"))),
    ("8Ei", Some(("9223372036854775807", "9223372036854775807", BinarySI, "9223372036854775807000000000"))),
    ("16Ei", Some(("9223372036854775807", "9223372036854775807", BinarySI, "9223372036854775807000000000"))),
    ("-8Ei", Some(("-9223372036854775807", "-9223372036854775807", BinarySI, "-9223372036854775807000000000"))),
    ("9223372036854775807", Some(("9223372036854775807", "9223372036854775807", DecimalSI, "9223372036854775807000000000"))),
    ("9223372036854775808", Some(("9223372036854775808", "9223372036854775808", DecimalSI, "9223372036854775808000000000"))),
    ("-9223372036854775808", Some(("-9223372036854775808", "-9223372036854775808", DecimalSI, "-9223372036854775808000000000"))),
    ("999999999999999999", Some(("999999999999999999", "999999999999999999", DecimalSI, "999999999999999999000000000"))),
    ("1234567890123456789", Some(("1234567890123456789", "1234567890123456789", DecimalSI, "1234567890123456789000000000"))),
    ("12345678901234567890.5", Some(("12345678901234567890500m", "12345678901234567890500m", DecimalSI, "12345678901234567890500000000"))),
    ("99999999999999999999999999999", Some(("99999999999999999999999999999", "99999999999999999999999999999", DecimalSI, "99999999999999999999999999999000000000"))),
    ("100000000000000000000000000000", Some(("100", "100", DecimalSI, "100000000000000000000000000000000000000"))),
    ("123456789012345678901234567890123456789012345678901234567890", Some(("123456789012345678901234567890123456789012345678901234567890", "123456789012345678901234567890123456789012345678901234567890", DecimalSI, "123456789012345678901234567890123456789012345678901234567890000000000"))),
    ("1.0000000000000000000000000000000000000001", Some(("1000000001n", "1000000001n", DecimalSI, "1000000001"))),
    ("7.99Ei", Some(("9211842821808707338240m", "9211842821808707338240m", BinarySI, "9211842821808707338240000000"))),
    ("0.0000000000001Ki", Some(("1n", "1n", DecimalSI, "1"))),
    ("-99999999999999999999999999999999Ei", Some(("-9223372036854775807", "-9223372036854775807", BinarySI, "-9223372036854775807000000000"))),
    ("999999999999999999999.999999999", Some(("999999999999999999999999999999n", "999999999999999999999999999999n", DecimalSI, "999999999999999999999999999999"))),
    ("-999999999999999999999.999999999", Some(("-999999999999999999999999999999n", "-999999999999999999999999999999n", DecimalSI, "-999999999999999999999999999999"))),
    ("1.073741824e9", Some(("1.073741824e9", "1073741824", DecimalExponent, "1073741824000000000"))),
    ("999E", Some(("999E", "999E", DecimalSI, "999000000000000000000000000000"))),
    ("1.5.3", None),
    ("1Gb", None),
    ("1gi", None),
    ("1KI", None),
    ("", None),
    (" ", None),
    ("1 ", None),
    (" 1", None),
    ("1\t", None),
    ("1 Ki", None),
    ("1Ki ", None),
    ("1Ki5", None),
    ("1Ki1", None),
    ("e3", Some(("0", "0", DecimalExponent, "0"))),
    ("1e", None),
    ("1E+", None),
    ("+", Some(("0", "0", DecimalSI, "0"))),
    ("-", Some(("0", "0", DecimalSI, "0"))),
    (".", Some(("0", "0", DecimalSI, "0"))),
    ("0x10", None),
    ("1_000", None),
    ("1,000", None),
    ("Infinity", None),
    ("NaN", None),
    ("1e1.5", None),
    ("--1", None),
    ("+-1", None),
    ("1e--3", None),
    ("1e+-3", None),
    ("1.5E", Some(("1500P", "1500P", DecimalSI, "1500000000000000000000000000"))),
    ];

    /// Left, right, `left.Cmp(right)`, `left.Add(right)` printed and its
    /// format, `left.Sub(right)` printed and its format.
    #[rustfmt::skip]
    const PAIRS: &[(&str, &str, i8, &str, Format, &str, Format)] = &[
    ("1Gi", "1073741824", 0, "2Gi", BinarySI, "0", BinarySI),
    ("1000m", "1", 0, "2", DecimalSI, "0", DecimalSI),
    ("1", "1000m", 0, "2", DecimalSI, "0", DecimalSI),
    ("1500m", "1.5", 0, "3", DecimalSI, "0", DecimalSI),
    ("1Gi", "1G", 1, "2073741824", BinarySI, "73741824", BinarySI),
    ("1Ki", "1k", 1, "2024", BinarySI, "24", BinarySI),
    ("0.5Gi", "512Mi", 0, "1Gi", BinarySI, "0", BinarySI),
    ("100m", "1n", 1, "100000001n", DecimalSI, "99999999n", DecimalSI),
    ("1e3", "1k", 0, "2e3", DecimalExponent, "0", DecimalExponent),
    ("1k", "1e3", 0, "2k", DecimalSI, "0", DecimalSI),
    ("0", "1Gi", -1, "1Gi", BinarySI, "-1Gi", BinarySI),
    ("0Ki", "1", -1, "1", DecimalSI, "-1", DecimalSI),
    ("0", "1e3", -1, "1e3", DecimalExponent, "-1e3", DecimalExponent),
    ("1Gi", "0", 1, "1Gi", BinarySI, "1Gi", BinarySI),
    ("1Gi", "-1Gi", 1, "0", BinarySI, "2Gi", BinarySI),
    ("1Gi", "-1", 1, "1073741823", BinarySI, "1073741825", BinarySI),
    ("-1", "1Gi", -1, "1073741823", DecimalSI, "-1073741825", DecimalSI),
    ("1.5Gi", "0.5Gi", 1, "2Gi", BinarySI, "1Gi", BinarySI),
    ("4Ei", "4Ei", 0, "8Ei", BinarySI, "0", BinarySI),
    ("8Ei", "1", 1, "8Ei", BinarySI, "9223372036854775806", BinarySI),
    ("9223372036854775807", "1", 1, "9223372036854775808", DecimalSI, "9223372036854775806", DecimalSI),
    ("1e-9", "1e-9", 0, "2e-9", DecimalExponent, "0", DecimalExponent),
    ("1n", "-1n", 1, "0", DecimalSI, "2n", DecimalSI),
    ("1Mi", "1Ki", 1, "1025Ki", BinarySI, "1023Ki", BinarySI),
    ("1", "0.5", 1, "1500m", DecimalSI, "500m", DecimalSI),
    ("1.500", "1", 1, "2500m", DecimalSI, "500m", DecimalSI),
    ("+1", "0", 1, "1", DecimalSI, "1", DecimalSI),
    ("1E3", "1", 1, "1001", DecimalExponent, "999", DecimalExponent),
    ("1e3", "1m", 1, "1000001e-3", DecimalExponent, "999999e-3", DecimalExponent),
    ("1Ki", "1n", 1, "1024000000001n", BinarySI, "1023999999999n", BinarySI),
    ("1Mi", "-1Ki", 1, "1023Ki", BinarySI, "1025Ki", BinarySI),
    ("100m", "900m", -1, "1", DecimalSI, "-800m", DecimalSI),
    ("1", "-1", 1, "0", DecimalSI, "2", DecimalSI),
    ("500m", "500m", 0, "1", DecimalSI, "0", DecimalSI),
    ("1e3", "-1e3", 1, "0", DecimalExponent, "2e3", DecimalExponent),
    ("1k", "0.5Ki", 1, "1512", DecimalSI, "488", DecimalSI),
    ("0.0001Ki", "2Ki", -1, "2048102400u", DecimalSI, "-2047897600u", DecimalSI),
    ("1e18", "1e18", 0, "2e18", DecimalExponent, "0", DecimalExponent),
    ("1E", "1k", 1, "1000000000000001k", DecimalSI, "999999999999999k", DecimalSI),
    ("2Ki", "-1", 1, "2047", BinarySI, "2049", BinarySI),
    ("1M", "1Mi", -1, "2048576", DecimalSI, "-48576", DecimalSI),
    ("0", "3e3", -1, "3e3", DecimalExponent, "-3e3", DecimalExponent),
    ("999E", "1E", 1, "1", DecimalSI, "998E", DecimalSI),
    ("-999E", "1E", -1, "-998E", DecimalSI, "-1", DecimalSI),
    ("1", "1n", 1, "1000000001n", DecimalSI, "999999999n", DecimalSI),
    ("1Ei", "1Ki", 1, "1125899906842625Ki", BinarySI, "1125899906842623Ki", BinarySI),
    ("1234567890123456789", "1234567890123456788", 1, "2469135780246913577", DecimalSI, "1", DecimalSI),
    ("9007199254740993", "9007199254740992", 1, "18014398509481985", DecimalSI, "1", DecimalSI),
    ("1Gi", "1073741825", -1, "2147483649", BinarySI, "-1", BinarySI),
    ("0.1", "100m", 0, "200m", DecimalSI, "0", DecimalSI),
    ("1.1Gi", "1181116006", 1, "2362232012400m", BinarySI, "400m", BinarySI),
    ];

    /// The value Kubernetes parsed, if it lies within our range.
    fn in_range(nanos: &str) -> Option<i128> {
        nanos.parse::<i128>().ok().filter(|n| n.abs() < LIMIT_NANOS)
    }

    /// Inputs Kubernetes accepts that we refuse on purpose, with the error.
    fn deliberately_refused(input: &str) -> Option<QuantityError> {
        match input {
            "+" | "-" | "." | "e3" => Some(QuantityError::InvalidNumber(input.to_owned())),
            "1e4294967296" => Some(QuantityError::ExponentOutOfRange("e4294967296".to_owned())),
            _ => None,
        }
    }

    #[test]
    fn accepted_inputs_get_the_value_format_and_canonical_string_kubernetes_gives() {
        let mut checked = 0;
        for &(input, expected) in PARSED {
            let Some((_, canonical, format, nanos)) = expected else {
                continue;
            };
            let Some(nanos) = in_range(nanos) else {
                continue;
            };
            if deliberately_refused(input).is_some() {
                continue;
            }
            let parsed = q(input);
            assert_eq!(parsed.nanos, nanos, "value of {input:?}");
            assert_eq!(parsed.format(), format, "format of {input:?}");
            assert_eq!(parsed.to_string(), canonical, "printing {input:?}");
            assert_eq!(
                q(canonical),
                parsed,
                "{canonical:?} reads back as {input:?}"
            );
            checked += 1;
        }
        assert!(checked > 100, "only {checked} accepted vectors checked");
    }

    #[test]
    fn inputs_kubernetes_rejects_are_rejected() {
        for &(input, expected) in PARSED {
            if expected.is_none() {
                assert!(input.parse::<Quantity>().is_err(), "{input:?} was accepted");
            }
        }
    }

    #[test]
    fn values_of_1000e_and_beyond_are_refused_rather_than_misprinted() {
        let mut refused = Vec::new();
        for &(input, expected) in PARSED {
            let Some((_, _, _, nanos)) = expected else {
                continue;
            };
            if in_range(nanos).is_none() {
                assert_eq!(
                    input.parse::<Quantity>(),
                    Err(QuantityError::TooLarge(input.to_owned()))
                );
                refused.push(input);
            }
        }
        assert!(refused.contains(&"1000E"), "{refused:?}");
        assert!(refused.contains(&"1e100"), "{refused:?}");
        // The reason for the limit: Kubernetes prints 1000E (10^21) as "1".
        let thousand_exa = PARSED.iter().find(|(input, _)| *input == "1000E").unwrap();
        assert_eq!(thousand_exa.1.unwrap().1, "1");
    }

    #[test]
    fn numbers_without_digits_and_wrapping_exponents_are_refused_though_kubernetes_accepts_them() {
        for &(input, expected) in PARSED {
            if let Some(error) = deliberately_refused(input) {
                assert!(expected.is_some(), "Kubernetes no longer accepts {input:?}");
                assert_eq!(input.parse::<Quantity>(), Err(error));
            }
        }
    }

    #[test]
    fn spellings_kubernetes_echoes_after_parsing_print_canonically() {
        let mut echoed = Vec::new();
        for &(input, expected) in PARSED {
            let Some((string, canonical, _, _)) = expected else {
                continue;
            };
            if string != canonical {
                // Kubernetes remembers the input only when it takes it for canonical.
                assert_eq!(string, input);
                if deliberately_refused(input).is_none() {
                    assert_eq!(q(input).to_string(), canonical);
                }
                echoed.push(input);
            }
        }
        assert!(
            echoed.contains(&"+1") && echoed.contains(&"1.500"),
            "{echoed:?}"
        );
    }

    #[test]
    fn comparison_sum_and_difference_match_kubernetes() {
        let mut refused = 0;
        for &(left, right, cmp, sum, sum_format, diff, diff_format) in PAIRS {
            let (a, b) = (q(left), q(right));
            assert_eq!(a.cmp(&b), cmp.cmp(&0), "{left} cmp {right}");
            let results = [
                (a.checked_add(&b), a.nanos + b.nanos, sum, sum_format, "+"),
                (a.checked_sub(&b), a.nanos - b.nanos, diff, diff_format, "-"),
            ];
            for (result, exact, printed, format, op) in results {
                if exact.abs() < LIMIT_NANOS {
                    let result = result.unwrap_or_else(|| panic!("{left} {op} {right} overflowed"));
                    assert_eq!(
                        (result.to_string().as_str(), result.format()),
                        (printed, format),
                        "{left} {op} {right}"
                    );
                } else {
                    // Kubernetes misprints these (999E + 1E prints as "1"); we refuse them.
                    assert_eq!(result, None, "{left} {op} {right}");
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 2);
    }

    #[test]
    fn binary_suffix_values_compare_equal_to_plain_bytes() {
        assert_eq!(q("1Gi"), q("1073741824"));
        assert_eq!(q("0.5Gi"), q("512Mi"));
        assert_eq!(q("1000m"), q("1"));
        assert_eq!(q("1e3"), q("1k"));
        assert!(q("1Gi") > q("1G"));
        assert!(q("-1") < q("1n"));
        let distinct: HashSet<Quantity> = ["1Gi", "1073741824", "1024Mi", "1.073741824e9"]
            .map(q)
            .into();
        assert_eq!(distinct.len(), 1);
    }

    #[test]
    fn precision_finer_than_a_nano_unit_rounds_away_from_zero() {
        assert_eq!(q("0.1n"), q("1n"));
        assert_eq!(q("-1.1n"), q("-2n"));
        assert_eq!(q("1e-100").to_string(), "1e-9");
        // apimachinery computes 10^2147483638 for this one and does not finish in 20 s.
        assert_eq!(q("1e-2147483647").to_string(), "1e-9");
        assert_eq!(
            q("1.0000000000000000000000000000000000000001").to_string(),
            "1000000001n"
        );
        assert_eq!(q("0.0000000000001Ki").to_string(), "1n");
    }

    #[test]
    fn binary_quantities_are_capped_at_the_largest_int64_like_kubernetes() {
        assert_eq!(q("8Ei").to_string(), "9223372036854775807");
        assert_eq!(
            q("-99999999999999999999999999999999Ei").to_string(),
            "-9223372036854775807"
        );
        assert_eq!(q("7.99Ei").to_string(), "9211842821808707338240m");
    }

    #[test]
    fn sums_that_reach_1000e_are_refused_not_wrapped() {
        let max = q("999999999999999999999.999999999");
        assert_eq!(max.checked_add(&q("1n")), None);
        assert_eq!(max.checked_sub(&q("-1n")), None);
        assert_eq!(q("-999E").checked_sub(&q("1E")), None);
        assert_eq!(q("999E").checked_add(&q("1E")), None);
        assert_eq!(max.checked_sub(&max), Some(Quantity::zero()));
    }

    #[test]
    fn the_left_operand_keeps_its_format_unless_it_is_zero() {
        assert_eq!(q("1Ki").checked_add(&q("1k")).unwrap().to_string(), "2024");
        assert_eq!(q("1Mi").checked_add(&q("1Mi")).unwrap().to_string(), "2Mi");
        assert_eq!(
            q("1M").checked_add(&q("1Mi")).unwrap().to_string(),
            "2048576"
        );
        assert_eq!(
            Quantity::zero().checked_add(&q("1Gi")).unwrap().to_string(),
            "1Gi"
        );
        assert_eq!(
            Quantity::zero().checked_sub(&q("3e3")).unwrap().to_string(),
            "-3e3"
        );
    }

    #[test]
    fn errors_name_the_broken_rule() {
        let message = |s: &str| s.parse::<Quantity>().unwrap_err().to_string();
        assert!(
            message("1Gb").starts_with("unknown suffix \"Gb\"; use Ki, Mi, Gi"),
            "{}",
            message("1Gb")
        );
        assert!(message("").contains("cannot be empty"));
        assert!(message(" 1").contains("whitespace"));
        assert!(message("1.5.3").contains("is not a number"));
        assert!(message("1e").contains("invalid exponent \"e\""));
        assert!(message("1e21").contains("too large"));
        assert!(message("1e99999999999").contains("exponent \"e99999999999\" is out of range"));
        assert!(message("1.5e-2147483647").contains("exponent \"e-2147483647\" is out of range"));
    }

    #[test]
    fn non_negative_parsing_refuses_negatives_only() {
        assert_eq!(
            Quantity::parse_non_negative("-1m"),
            Err(QuantityError::Negative("-1m".into()))
        );
        assert_eq!(Quantity::parse_non_negative("-0"), Ok(Quantity::zero()));
        assert_eq!(Quantity::parse_non_negative("2Gi"), Ok(q("2Gi")));
        assert_eq!(
            Quantity::parse_non_negative("1Gb"),
            Err(QuantityError::UnknownSuffix("Gb".into()))
        );
        assert!(q("-1n").is_negative() && !q("0").is_negative() && q("-0").is_zero());
    }

    #[test]
    fn whole_numbers_and_counts() {
        assert!(q("3").is_whole() && q("3000m").is_whole() && q("1Ki").is_whole());
        assert!(!q("1500m").is_whole() && !q("1n").is_whole());
        assert!(q("3").fits_count(3) && !q("3").fits_count(4));
        assert!(q("3500m").fits_count(3) && !q("2999m").fits_count(3));
        assert!(q("0").fits_count(0) && !q("-1").fits_count(0));
        assert!(q("100E").fits_count(usize::MAX) && !q("1E").fits_count(usize::MAX));
    }

    #[test]
    fn serializes_as_the_canonical_string_and_deserializes_strings_and_whole_numbers() {
        assert_eq!(serde_json::to_string(&q("1.5Gi")).unwrap(), "\"1536Mi\"");
        assert_eq!(serde_json::to_string(&q("1E3")).unwrap(), "\"1e3\"");
        let read = |json: &str| serde_json::from_str::<Quantity>(json);
        assert_eq!(read("\"1.5Gi\"").unwrap(), q("1536Mi"));
        assert_eq!(read("1024").unwrap(), q("1Ki"));
        assert_eq!(read("-3").unwrap(), q("-3"));
        assert_eq!(
            read("18446744073709551615").unwrap(),
            q("18446744073709551615")
        );
        let float = read("1.5").unwrap_err().to_string();
        assert!(float.contains("a whole number"), "{float}");
        let bad = read("\"1Gb\"").unwrap_err().to_string();
        assert!(bad.contains("unknown suffix \"Gb\""), "{bad}");
        assert!(read("\"1 \"").is_err() && read("null").is_err());
    }
}
