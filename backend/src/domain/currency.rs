//! The one currency every price and cost is in, and costs rounded for
//! people to its minor unit.

use std::fmt;

/// ISO 4217 codes in use, by the digits of their minor unit. Codes for
/// metals, funds-transfer units and testing (XAU, XDR, XTS, XXX…) are left out:
/// nobody prices a core-hour in them.
const MINOR_UNITS: [(u32, &str); 4] = [
    (
        0,
        "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF",
    ),
    (
        2,
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN \
         BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB \
         EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS \
         KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN \
         MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD \
         SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS \
         UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR ZMW ZWG",
    ),
    (3, "BHD IQD JOD KWD LYD OMR TND"),
    (4, "CLF UYW"),
];

/// An ISO 4217 currency: its three-letter code and the digits of its minor
/// unit (2 for EUR and USD, 0 for JPY, 3 for KWD).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Currency {
    code: [u8; 3],
    minor_unit: u32,
}

impl Currency {
    /// A code in use, in capitals: `EUR`, `USD`, `JPY`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let code: [u8; 3] = s
            .as_bytes()
            .try_into()
            .ok()
            .filter(|c: &[u8; 3]| c.iter().all(u8::is_ascii_uppercase))
            .ok_or_else(|| {
                format!("\"{s}\" is not a currency: write an ISO 4217 code in capitals, such as EUR or USD")
            })?;
        MINOR_UNITS
            .iter()
            .find(|(_, codes)| codes.split_ascii_whitespace().any(|c| c == s))
            .map(|(minor_unit, _)| Self {
                code,
                minor_unit: *minor_unit,
            })
            .ok_or_else(|| format!("\"{s}\" is not an ISO 4217 currency code in use"))
    }

    pub fn code(&self) -> &str {
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Digits after the point of an amount in this currency.
    pub fn minor_unit(&self) -> u32 {
        self.minor_unit
    }

    /// Millionths rounded half away from zero to the minor unit, as a
    /// decimal string: `0.10`, `1235` (JPY), `0.125` (KWD).
    pub fn round(&self, micros: i128) -> String {
        let step = 10i128.pow(super::price::DECIMALS - self.minor_unit.min(super::price::DECIMALS));
        let m = micros.saturating_abs();
        let units = (m + step / 2) / step;
        let sign = if micros < 0 && units > 0 { "-" } else { "" };
        let digits = self.minor_unit.min(super::price::DECIMALS);
        if digits == 0 {
            return format!("{sign}{units}");
        }
        let scale = 10i128.pow(digits);
        format!(
            "{sign}{}.{:0width$}",
            units / scale,
            units % scale,
            width = digits as usize
        )
    }

    /// A cost as a person reads it: rounded to the minor unit, with the
    /// code (`0.10 USD`); a cost too small to show says so (`< 0.01 USD`)
    /// rather than looking free.
    pub fn show(&self, micros: i128) -> String {
        let rounded = self.round(micros);
        if micros != 0 && rounded.bytes().all(|b| matches!(b, b'0' | b'.' | b'-')) {
            let smallest = self.round(
                10i128.pow(super::price::DECIMALS - self.minor_unit.min(super::price::DECIMALS)),
            );
            return if micros < 0 {
                format!("> -{smallest} {self}")
            } else {
                format!("< {smallest} {self}")
            };
        }
        format!("{rounded} {self}")
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl std::str::FromStr for Currency {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_in_use_parse_with_their_minor_unit() {
        for (code, digits) in [("EUR", 2), ("USD", 2), ("JPY", 0), ("KWD", 3), ("CLF", 4)] {
            let c = Currency::parse(code).unwrap();
            assert_eq!((c.code(), c.minor_unit()), (code, digits));
        }
        for bad in ["", "eur", "EURO", "EU", "XXX", "XAU", "ABC", "E€R", " USD"] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn costs_round_half_away_from_zero_to_the_minor_unit() {
        let usd = Currency::parse("USD").unwrap();
        assert_eq!(usd.round(100_389), "0.10");
        assert_eq!(usd.round(105_000), "0.11");
        assert_eq!(usd.round(104_999), "0.10");
        assert_eq!(usd.round(12_345_678_901), "12345.68");
        assert_eq!(usd.round(-75_292), "-0.08");
        assert_eq!(usd.round(-4_000), "0.00");
        let jpy = Currency::parse("JPY").unwrap();
        assert_eq!(jpy.round(1_234_500_000), "1235");
        let kwd = Currency::parse("KWD").unwrap();
        assert_eq!(kwd.round(124_500), "0.125");
        let clf = Currency::parse("CLF").unwrap();
        assert_eq!(clf.round(1), "0.0000");
    }

    #[test]
    fn people_see_the_code_and_no_cost_hides_as_zero() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(eur.show(300_000), "0.30 EUR");
        assert_eq!(eur.show(0), "0.00 EUR");
        assert_eq!(eur.show(4_000), "< 0.01 EUR");
        assert_eq!(eur.show(-4_000), "> -0.01 EUR");
        assert_eq!(Currency::parse("JPY").unwrap().show(400_000), "< 1 JPY");
    }
}
