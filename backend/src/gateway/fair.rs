//! Fair shares at the gateway: each tenant has its own request rate (a token
//! bucket), its own bound on requests in flight, on open watches and on open
//! sessions (exec, attach, port-forward). A tenant
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
    /// exec, attach and port-forward sessions open at the same time.
    pub max_sessions: u32,
}

impl From<&crate::config::TenantApiConfig> for Limits {
    /// Every tenant's share unless its policy sets its own.
    fn from(config: &crate::config::TenantApiConfig) -> Self {
        Self {
            rate: config.rate,
            burst: config.burst,
            max_in_flight: config.max_in_flight,
            max_watches: config.max_watches,
            max_sessions: config.max_sessions,
        }
    }
}

impl Limits {
    /// A tenant's own share; figures it does not set are the defaults'.
    pub fn of(share: crate::domain::tenant_policy::ApiShare, defaults: Limits) -> Self {
        Self {
            rate: f64::from(share.requests_per_second),
            burst: share.burst,
            max_in_flight: share.max_in_flight,
            max_watches: share.max_watches,
            max_sessions: share.max_sessions.unwrap_or(defaults.max_sessions),
        }
    }
}

/// What a request holds while it is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// A request in flight.
    Request,
    /// An open watch: not "in flight" while it stays open.
    Watch,
    /// An upgraded connection: exec, attach or port-forward.
    Session,
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
    Sessions {
        limits: Limits,
    },
}

impl Throttled {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Rate { .. } => "rate",
            Self::InFlight { .. } => "in_flight",
            Self::Watches { .. } => "watches",
            Self::Sessions { .. } => "sessions",
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
            Self::Sessions { limits } => format!(
                "the tenant \"{slug}\" has {} exec, attach or port-forward sessions open at the tenant API, its limit; end one first",
                limits.max_sessions
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
    sessions: AtomicU32,
}

/// Held while a request is in flight (or a watch or session open); releases on drop.
pub struct Admission {
    share: Arc<Share>,
    slot: Slot,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.share.counter(self.slot).fetch_sub(1, Ordering::AcqRel);
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
            sessions: AtomicU32::new(0),
        }
    }

    fn counter(&self, slot: Slot) -> &AtomicU32 {
        match slot {
            Slot::Request => &self.in_flight,
            Slot::Watch => &self.watches,
            Slot::Session => &self.sessions,
        }
    }

    /// Admits one request, or says why not. Each request counts against the
    /// bound of its slot only.
    pub fn admit(self: &Arc<Self>, limits: Limits, slot: Slot) -> Result<Admission, Throttled> {
        self.take_token(limits)?;
        let (max, refused) = match slot {
            Slot::Request => (limits.max_in_flight, Throttled::InFlight { limits }),
            Slot::Watch => (limits.max_watches, Throttled::Watches { limits }),
            Slot::Session => (limits.max_sessions, Throttled::Sessions { limits }),
        };
        if !bounded_increment(self.counter(slot), max) {
            return Err(refused);
        }
        Ok(Admission {
            share: self.clone(),
            slot,
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
        max_sessions: 1,
    };

    #[test]
    fn a_burst_is_admitted_and_the_next_request_told_when_to_retry() {
        let share = Arc::new(Share::new(LIMITS.burst));
        let roomy = Limits {
            max_in_flight: 10,
            ..LIMITS
        };
        for _ in 0..3 {
            drop(share.admit(roomy, Slot::Request).unwrap());
        }
        let refused = share.admit(roomy, Slot::Request).err().unwrap();
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
        let first = share.admit(generous, Slot::Request).unwrap();
        let _second = share.admit(generous, Slot::Request).unwrap();
        assert_eq!(
            share.admit(generous, Slot::Request).err().unwrap().reason(),
            "in_flight"
        );
        drop(first);
        assert!(share.admit(generous, Slot::Request).is_ok());
        let watch = share.admit(generous, Slot::Watch).unwrap();
        assert_eq!(
            share.admit(generous, Slot::Watch).err().unwrap().reason(),
            "watches"
        );
        drop(watch);
        assert!(share.admit(generous, Slot::Watch).is_ok());
        let session = share.admit(generous, Slot::Session).unwrap();
        assert_eq!(
            share.admit(generous, Slot::Session).err().unwrap().reason(),
            "sessions"
        );
        assert!(
            share.admit(generous, Slot::Request).is_ok(),
            "an open session leaves the other slots alone"
        );
        drop(session);
        assert!(share.admit(generous, Slot::Session).is_ok());
    }

    #[test]
    fn tenants_have_shares_of_their_own() {
        let shares = Shares::default();
        let a = shares.of("a", LIMITS);
        for _ in 0..3 {
            drop(a.admit(LIMITS, Slot::Request).unwrap());
        }
        assert!(a.admit(LIMITS, Slot::Request).is_err());
        assert!(shares.of("b", LIMITS).admit(LIMITS, Slot::Request).is_ok());
    }
}
