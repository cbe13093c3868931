//! Prices and exact money: what a resource costs per unit and period, and
//! sums of amounts that never round until they are shown.

use std::fmt;

use super::FieldError;

const NANOS_PER_UNIT: i128 = 1_000_000_000;
const GIB_NANOS: i128 = (1 << 30) * NANOS_PER_UNIT;
/// Digits after the point of every price and every amount shown.
pub const DECIMALS: u32 = 6;
const MICROS: i128 = 1_000_000;

/// The time a price is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Period {
    Hour,
    /// 730 hours, a twelfth of a 365-day year, as cloud providers bill.
    Month,
}

impl Period {
    pub fn seconds(self) -> i128 {
        match self {
            Self::Hour => 3600,
            Self::Month => 730 * 3600,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Month => "month",
        }
    }
}

/// A resource that has a price, with the unit and period it is priced in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PricedResource {
    pub name: String,
    /// The unit a price is per: `core`, `GiB` or `unit`.
    pub unit: &'static str,
    /// The unit in nano-units of the quantity (1 core = 10⁹, 1 GiB = 2³⁰·10⁹).
    pub unit_nanos: i128,
    pub period: Period,
}

impl PricedResource {
    /// The priced resources: CPU and memory requests per core-hour and
    /// GiB-hour, storage (in all, or per StorageClass) per GiB-month, and
    /// extended resources such as GPUs per unit-hour.
    pub fn parse(name: &str) -> Result<Self, String> {
        let (unit, unit_nanos, period) = match name {
            "requests.cpu" => ("core", NANOS_PER_UNIT, Period::Hour),
            "requests.memory" => ("GiB", GIB_NANOS, Period::Hour),
            "requests.storage" => ("GiB", GIB_NANOS, Period::Month),
            _ if storage_class_storage(name) => ("GiB", GIB_NANOS, Period::Month),
            _ if extended_request(name) => ("unit", NANOS_PER_UNIT, Period::Hour),
            _ => return Err(Self::rule()),
        };
        Ok(Self {
            name: name.to_string(),
            unit,
            unit_nanos,
            period,
        })
    }

    fn rule() -> String {
        "must be a priced resource: requests.cpu (per core-hour), requests.memory (per GiB-hour), \
         requests.storage or <class>.storageclass.storage.k8s.io/requests.storage (per GiB-month), \
         or an extended resource such as requests.nvidia.com/gpu (per unit-hour)"
            .into()
    }

    /// What one price is for: `core-hour`, `GiB-month`.
    pub fn per(&self) -> String {
        format!("{}-{}", self.unit, self.period.as_str())
    }

    /// The unit of an amount of this resource over time: `core-hours`.
    pub fn amount_unit(&self) -> String {
        format!("{}s", self.per())
    }

    /// The denominator that turns nano-unit-seconds into units and periods.
    pub fn time_denominator(&self) -> i128 {
        self.unit_nanos * self.period.seconds()
    }

    /// The denominator that turns nano-unit-seconds times a price in
    /// millionths into currency.
    pub fn cost_denominator(&self) -> i128 {
        self.time_denominator() * MICROS
    }
}

fn storage_class_storage(name: &str) -> bool {
    name.strip_suffix(".storageclass.storage.k8s.io/requests.storage")
        .is_some_and(super::is_dns_subdomain)
}

fn extended_request(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(|rest| {
        rest.contains('/')
            && !rest.starts_with("kubernetes.io/")
            && !name.contains(".storageclass.storage.k8s.io/")
            && super::is_qualified_name(rest)
    })
}

/// A price: a decimal amount of zero or more with at most six digits after
/// the point, kept as millionths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(i64);

/// A price above a billion per unit is a typo, not a price.
const MAX_PRICE_MICROS: i64 = 1_000_000_000 * 1_000_000;

impl Price {
    pub fn parse(s: &str) -> Result<Self, String> {
        let rule = || {
            format!(
                "\"{s}\" is not a price: write a decimal amount of zero or more, such as \"0.031\", \
                 with at most {DECIMALS} digits after the point and below 1000000000"
            )
        };
        let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
        let digits = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty()
            || !digits(whole)
            || !digits(fraction)
            || (s.contains('.') && fraction.is_empty())
            || fraction.len() > DECIMALS as usize
            || whole.len() > 10
        {
            return Err(rule());
        }
        let whole: i64 = whole.parse().map_err(|_| rule())?;
        let fraction: i64 = format!("{fraction:0<6}").parse().map_err(|_| rule())?;
        let micros = whole
            .checked_mul(1_000_000)
            .and_then(|w| w.checked_add(fraction))
            .filter(|m| *m < MAX_PRICE_MICROS)
            .ok_or_else(rule)?;
        Ok(Self(micros))
    }

    pub fn from_micros(micros: i64) -> Result<Self, FieldError> {
        if (0..MAX_PRICE_MICROS).contains(&micros) {
            Ok(Self(micros))
        } else {
            Err(FieldError::new(
                "price",
                format!("{micros} millionths is out of range"),
            ))
        }
    }

    pub fn micros(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_micros(i128::from(self.0)))
    }
}

/// An exact sum of non-negative fractions over one denominator, kept as a
/// whole part and a remainder so that it never overflows while summing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exact {
    denominator: i128,
    whole: i128,
    rest: i128,
}

/// A sum grew past what an `i128` holds, or a term did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an amount is too large to compute exactly")]
pub struct Overflow;

impl Exact {
    pub fn zero(denominator: i128) -> Self {
        assert!(denominator > 0, "a denominator is positive");
        Self {
            denominator,
            whole: 0,
            rest: 0,
        }
    }

    /// Adds `numerator / denominator`; `numerator` is zero or more.
    pub fn add(&mut self, numerator: i128) -> Result<(), Overflow> {
        debug_assert!(numerator >= 0);
        self.whole = self
            .whole
            .checked_add(numerator / self.denominator)
            .ok_or(Overflow)?;
        self.rest += numerator % self.denominator;
        if self.rest >= self.denominator {
            self.rest -= self.denominator;
            self.whole = self.whole.checked_add(1).ok_or(Overflow)?;
        }
        Ok(())
    }

    /// Adds `a * b * c / denominator`, every factor zero or more.
    pub fn add_product(&mut self, a: i128, b: i128, c: i128) -> Result<(), Overflow> {
        let n = a
            .checked_mul(b)
            .and_then(|n| n.checked_mul(c))
            .ok_or(Overflow)?;
        self.add(n)
    }

    /// The value in millionths, rounded half up: the one rounding an amount gets.
    pub fn micros(&self) -> Result<i128, Overflow> {
        // Long division, one digit at a time, so nothing above `10 · denominator` is formed.
        let mut rest = self.rest;
        let mut fraction = 0i128;
        for _ in 0..DECIMALS {
            rest *= 10;
            fraction = fraction * 10 + rest / self.denominator;
            rest %= self.denominator;
        }
        if rest * 2 >= self.denominator {
            fraction += 1;
        }
        self.whole
            .checked_mul(MICROS)
            .and_then(|w| w.checked_add(fraction))
            .ok_or(Overflow)
    }

    pub fn is_zero(&self) -> bool {
        self.whole == 0 && self.rest == 0
    }
}

/// Millionths as a decimal string with six digits after the point: `12.500000`.
pub fn format_micros(micros: i128) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    format!("{sign}{}.{:06}", m / 1_000_000, m % 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_parse_as_decimals_with_at_most_six_digits() {
        assert_eq!(Price::parse("0.031").unwrap().micros(), 31_000);
        assert_eq!(Price::parse("12").unwrap().micros(), 12_000_000);
        assert_eq!(Price::parse("0.000001").unwrap().micros(), 1);
        assert_eq!(Price::parse("0").unwrap().to_string(), "0.000000");
        for bad in [
            "",
            ".5",
            "1.",
            "-1",
            "1e3",
            "0.0000001",
            "1,5",
            " 1",
            "99999999999",
            "1000000000",
        ] {
            assert!(Price::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn resources_have_their_units() {
        let cpu = PricedResource::parse("requests.cpu").unwrap();
        assert_eq!(
            (cpu.per(), cpu.amount_unit()),
            ("core-hour".into(), "core-hours".into())
        );
        let fast =
            PricedResource::parse("fast.storageclass.storage.k8s.io/requests.storage").unwrap();
        assert_eq!(fast.per(), "GiB-month");
        assert_eq!(
            PricedResource::parse("requests.nvidia.com/gpu")
                .unwrap()
                .per(),
            "unit-hour"
        );
        for bad in [
            "pods",
            "limits.cpu",
            "requests.cpus",
            "requests.kubernetes.io/x",
            "x.storageclass.storage.k8s.io/requests.cpu",
        ] {
            assert!(PricedResource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn exact_sums_round_once_half_up() {
        // A third, three times, is exactly one.
        let mut third = Exact::zero(3);
        for _ in 0..3 {
            third.add(1).unwrap();
        }
        assert_eq!(third.micros().unwrap(), 1_000_000);
        let mut half_micro = Exact::zero(2_000_000);
        half_micro.add(1).unwrap();
        assert_eq!(half_micro.micros().unwrap(), 1);
        let mut two_thirds = Exact::zero(3);
        two_thirds.add(2).unwrap();
        assert_eq!(format_micros(two_thirds.micros().unwrap()), "0.666667");
    }
}
