//! The one retry policy: capped exponential backoff with jitter.

use std::time::Duration;

use rand::RngExt;

const BASE: Duration = Duration::from_millis(500);
const CAP: Duration = Duration::from_secs(60);

/// The wait before attempt `attempts + 1`: 0.5 s doubling to a 60 s cap, then
/// scaled by a random 50–100 % so failed tenants do not retry in lockstep.
pub fn delay(attempts: i32) -> Duration {
    let exponent = attempts.clamp(1, 16) as u32 - 1;
    let full = BASE.saturating_mul(2u32.saturating_pow(exponent)).min(CAP);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_stop_at_the_cap() {
        assert!(delay(1) <= BASE && delay(1) >= BASE / 2);
        assert!(delay(4) >= Duration::from_secs(2) && delay(4) <= Duration::from_secs(4));
        for attempts in [10, 100, i32::MAX] {
            assert!(delay(attempts) <= CAP && delay(attempts) >= CAP / 2);
        }
    }
}
