//! Fair shares at the gateway: each tenant has its own request rate (a token
//! bucket), its own bound on requests in flight and on open watches. A tenant
//! over its share is answered 429 at once; it never waits in a queue another
//! tenant's requests stand in, so one tenant at its limit slows no other.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// A tenant's share.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Requests per second, sustained.
    pub rate: f64,
    /// Requests allowed at once above the rate.
    pub burst: u32,
    pub max_in_flight: u32,
    pub max_watches: u32,
}

impl From<crate::domain::tenant_policy::ApiShare> for Limits {
    fn from(share: crate::domain::tenant_policy::ApiShare) -> Self {
        Self {
            rate: f64::from(share.requests_per_second),
            burst: share.burst,
            max_in_flight: share.max_in_flight,
            max_watches: share.max_watches,
        }
    }
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq)]
pub enum Throttled {
    Rate {
        limits: Limits,
        retry_after: Duration,
    },
    InFlight {
        limits: Limits,
    },
    Watches {
        limits: Limits,
    },
}

impl Throttled {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rate { .. } => "rate",
            Self::InFlight { .. } => "in_flight",
            Self::Watches { .. } => "watches",
        }
    }

    pub fn retry_after(&self) -> Duration {
        match self {
            Self::Rate { retry_after, .. } => *retry_after,
            _ => Duration::from_secs(1),
        }
    }

    pub fn message(&self, slug: &str) -> String {
        match self {
            Self::Rate { limits, .. } => format!(
                "the tenant \"{slug}\" is over its request rate at the tenant API ({} per second, bursts of {}); retry later, or ask a platform admin for a larger share",
                limits.rate, limits.burst
            ),
            Self::InFlight { limits } => format!(
                "the tenant \"{slug}\" has {} requests in flight at the tenant API, its limit; retry when one has finished",
                limits.max_in_flight
            ),
            Self::Watches { limits } => format!(
                "the tenant \"{slug}\" has {} watches open at the tenant API, its limit; close one first",
                limits.max_watches
            ),
        }
    }
}

struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// One tenant's counters.
pub struct Share {
    bucket: Mutex<Bucket>,
    in_flight: AtomicU32,
    watches: AtomicU32,
}

/// Held while a request is in flight (or a watch open); releases on drop.
pub struct Admission {
    share: Arc<Share>,
    watch: bool,
}

impl Drop for Admission {
    fn drop(&mut self) {
        let counter = if self.watch {
            &self.share.watches
        } else {
            &self.share.in_flight
        };
        counter.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Share {
    fn new(burst: u32) -> Self {
        Self {
            bucket: Mutex::new(Bucket {
                tokens: f64::from(burst),
                refilled_at: Instant::now(),
            }),
            in_flight: AtomicU32::new(0),
            watches: AtomicU32::new(0),
        }
    }

    /// Admits one request, or says why not. A watch counts against the watch
    /// bound only: while it is open it is not a request "in flight".
    pub fn admit(self: &Arc<Self>, limits: Limits, watch: bool) -> Result<Admission, Throttled> {
        self.take_token(limits)?;
        if watch {
            if !bounded_increment(&self.watches, limits.max_watches) {
                return Err(Throttled::Watches { limits });
            }
        } else if !bounded_increment(&self.in_flight, limits.max_in_flight) {
            return Err(Throttled::InFlight { limits });
        }
        Ok(Admission {
            share: self.clone(),
            watch,
        })
    }

    fn take_token(&self, limits: Limits) -> Result<(), Throttled> {
        let mut bucket = self.bucket.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let elapsed = now.duration_since(bucket.refilled_at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limits.rate).min(f64::from(limits.burst.max(1)));
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait = if limits.rate > 0.0 {
            (1.0 - bucket.tokens) / limits.rate
        } else {
            60.0
        };
        Err(Throttled::Rate {
            limits,
            retry_after: Duration::from_secs_f64(wait.ceil().max(1.0)),
        })
    }
}

/// Adds one unless the counter is at `max`.
fn bounded_increment(counter: &AtomicU32, max: u32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok()
}

/// Every tenant's share, made on first use.
#[derive(Default)]
pub struct Shares(Mutex<HashMap<String, Arc<Share>>>);

impl Shares {
    pub fn of(&self, slug: &str, limits: Limits) -> Arc<Share> {
        let mut shares = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        shares
            .entry(slug.to_string())
            .or_insert_with(|| Arc::new(Share::new(limits.burst)))
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        rate: 1.0,
        burst: 3,
        max_in_flight: 2,
        max_watches: 1,
    };

    #[test]
    fn a_burst_is_admitted_and_the_next_request_told_when_to_retry() {
        let share = Arc::new(Share::new(LIMITS.burst));
        let roomy = Limits {
            max_in_flight: 10,
            ..LIMITS
        };
        for _ in 0..3 {
            drop(share.admit(roomy, false).unwrap());
        }
        let refused = share.admit(roomy, false).err().unwrap();
        assert_eq!(refused.reason(), "rate");
        assert_eq!(refused.retry_after(), Duration::from_secs(1));
    }

    #[test]
    fn in_flight_and_watch_slots_are_given_back_when_a_request_ends() {
        let share = Arc::new(Share::new(100));
        let generous = Limits {
            rate: 1000.0,
            burst: 100,
            ..LIMITS
        };
        let first = share.admit(generous, false).unwrap();
        let _second = share.admit(generous, false).unwrap();
        assert_eq!(
            share.admit(generous, false).err().unwrap().reason(),
            "in_flight"
        );
        drop(first);
        assert!(share.admit(generous, false).is_ok());
        let watch = share.admit(generous, true).unwrap();
        assert_eq!(
            share.admit(generous, true).err().unwrap().reason(),
            "watches"
        );
        drop(watch);
        assert!(share.admit(generous, true).is_ok());
    }

    #[test]
    fn tenants_have_shares_of_their_own() {
        let shares = Shares::default();
        let a = shares.of("a", LIMITS);
        for _ in 0..3 {
            drop(a.admit(LIMITS, false).unwrap());
        }
        assert!(a.admit(LIMITS, false).is_err());
        assert!(shares.of("b", LIMITS).admit(LIMITS, false).is_ok());
    }
}
