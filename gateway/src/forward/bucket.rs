//! Per-shard token bucket over an exact 1-second window.
//!
//! Kinesis counts a shard's writes per second; a classic token bucket (refill at the rate,
//! capacity one second) lets up to twice the limit through in some 1-second window, and so
//! relies on throttling (the KPL does that at 150 %). This bucket never does:
//!
//! - A request spends tokens (records, bytes) when it is sent.
//! - The tokens of a finished request come back exactly [`WINDOW`] after its *response*
//!   arrived; tokens of a request in flight are spent "now" for as long as it is in flight.
//! - Tokens of records Kinesis refused (throttled, failed) come back at once: they were not
//!   written, so they do not count against the shard.
//!
//! Why that is exact: Kinesis handles a request at some instant `s` between our send `t` and
//! our response `r`. If an earlier request's tokens are back, its `r_i <= t - 1 s`, so its
//! `s_i <= r_i <= s - 1 s`: the two are never in the same 1-second window. Hence, in every
//! 1-second window of the server's clock, the accepted records and bytes are at most what
//! the bucket holds, whatever the network latency. The cost is the round trip: with a
//! backlog the shard runs at `1 s / (1 s + rtt)` of the limit.
//!
//! A throttle nevertheless (another producer on the stream) lowers the bucket's factor
//! (multiplicatively, at most once per window); each clean window raises it again until it
//! is back at 1 (see [`WindowBucket::throttled`]).

use super::config::ShardLimits;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// The window Kinesis limits are defined over.
pub const WINDOW: Duration = Duration::from_secs(1);
/// Lowest factor a throttled shard is slowed to.
const MIN_FACTOR: f64 = 0.25;
/// Multiplicative decrease per throttled window.
const DECREASE: f64 = 0.8;
/// Additive increase per window without throttles.
const INCREASE: f64 = 0.05;

/// Identifies a spend until the request completes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ticket(u64);

/// Spent tokens that return at `at`.
#[derive(Debug, Clone, Copy)]
struct Returning {
    at: Instant,
    records: u64,
    bytes: u64,
}

/// One shard's bucket. All times are passed in, so it is deterministic under test.
#[derive(Debug)]
pub struct WindowBucket {
    limits: ShardLimits,
    factor: f64,
    /// Completed requests' tokens, in order of return time.
    returning: VecDeque<Returning>,
    in_flight: HashMap<Ticket, (u64, u64)>,
    /// Sums over `returning` and `in_flight`.
    used_records: u64,
    used_bytes: u64,
    next_ticket: u64,
    last_decrease: Option<Instant>,
    last_increase: Option<Instant>,
}

impl WindowBucket {
    /// A full bucket.
    pub fn new(limits: ShardLimits) -> Self {
        Self {
            limits,
            factor: 1.0,
            returning: VecDeque::new(),
            in_flight: HashMap::new(),
            used_records: 0,
            used_bytes: 0,
            next_ticket: 0,
            last_decrease: None,
            last_increase: None,
        }
    }

    fn expire(&mut self, now: Instant) {
        while let Some(r) = self.returning.front().copied() {
            if r.at > now {
                break;
            }
            self.returning.pop_front();
            self.used_records -= r.records;
            self.used_bytes -= r.bytes;
        }
        // Recover from throttling: one step per clean window.
        if self.factor < 1.0 {
            let clean = |t: Option<Instant>| t.is_none_or(|t| now.duration_since(t) >= WINDOW);
            if clean(self.last_decrease) && clean(self.last_increase) {
                self.factor = (self.factor + INCREASE).min(1.0);
                self.last_increase = Some(now);
            }
        }
    }

    /// New limits (a reload): tokens out stay out, so a lower limit lets nothing more through
    /// until enough of them are back, and a higher one lets more through at once.
    pub fn set_limits(&mut self, limits: ShardLimits) {
        self.limits = limits;
    }

    /// Current limits (after throttle slow-down).
    pub fn limits(&self) -> (u64, u64) {
        (
            ((self.limits.records as f64 * self.factor) as u64).max(1),
            ((self.limits.bytes as f64 * self.factor) as u64).max(1),
        )
    }

    /// Records and bytes that may be sent now.
    pub fn available(&mut self, now: Instant) -> (u64, u64) {
        self.expire(now);
        let (records, bytes) = self.limits();
        (
            records.saturating_sub(self.used_records),
            bytes.saturating_sub(self.used_bytes),
        )
    }

    /// Spends tokens for a request being sent. The caller checked [`Self::available`].
    pub fn spend(&mut self, records: u64, bytes: u64) -> Ticket {
        let t = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.in_flight.insert(t, (records, bytes));
        self.used_records += records;
        self.used_bytes += bytes;
        t
    }

    /// The request's response arrived at `now`; `refused` records and bytes were not
    /// written (their tokens return at once), the rest return at `now + WINDOW`. A request
    /// that failed as a whole (we cannot know whether Kinesis wrote it) refunds nothing.
    pub fn complete(&mut self, ticket: Ticket, now: Instant, refused: (u64, u64)) {
        let Some((records, bytes)) = self.in_flight.remove(&ticket) else {
            return;
        };
        let refund = (refused.0.min(records), refused.1.min(bytes));
        self.used_records -= refund.0;
        self.used_bytes -= refund.1;
        let back = Returning {
            at: now + WINDOW,
            records: records - refund.0,
            bytes: bytes - refund.1,
        };
        // Responses complete in time order, so the deque stays sorted; keep it sorted anyway
        // if a caller passes an older `now`.
        let at = self.returning.partition_point(|r| r.at <= back.at);
        self.returning.insert(at, back);
    }

    /// When tokens next come back, if any are out.
    pub fn next_return(&self) -> Option<Instant> {
        self.returning.front().map(|r| r.at)
    }

    /// Kinesis throttled this shard at `now`: slow down (at most once per window).
    pub fn throttled(&mut self, now: Instant) {
        if self
            .last_decrease
            .is_none_or(|t| now.duration_since(t) >= WINDOW)
        {
            self.factor = (self.factor * DECREASE).max(MIN_FACTOR);
            self.last_decrease = Some(now);
        }
    }

    /// The current factor (1 = full limits).
    pub fn factor(&self) -> f64 {
        self.factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ShardLimits = ShardLimits {
        records: 1000,
        bytes: 1 << 20,
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn tokens_return_one_window_after_the_response() {
        let t0 = Instant::now();
        let mut b = WindowBucket::new(LIMITS);
        assert_eq!(b.available(t0), (1000, 1 << 20));
        let t = b.spend(10, 600_000);
        assert_eq!(b.available(t0 + ms(500)), (990, (1 << 20) - 600_000));
        b.complete(t, t0 + ms(20), (0, 0));
        assert_eq!(b.next_return(), Some(t0 + ms(1020)));
        assert_eq!(b.available(t0 + ms(1019)).1, (1 << 20) - 600_000);
        assert_eq!(b.available(t0 + ms(1020)), (1000, 1 << 20));
    }

    #[test]
    fn in_flight_tokens_never_return_by_themselves() {
        let t0 = Instant::now();
        let mut b = WindowBucket::new(LIMITS);
        b.spend(1000, 10);
        assert_eq!(b.available(t0 + Duration::from_secs(60)).0, 0);
    }

    #[test]
    fn refused_records_refund_at_once() {
        let t0 = Instant::now();
        let mut b = WindowBucket::new(LIMITS);
        let t = b.spend(500, 500_000);
        b.complete(t, t0, (200, 200_000));
        assert_eq!(b.available(t0), (700, (1 << 20) - 300_000));
    }

    /// The invariant: any sequence of requests paced by the bucket puts at most the limit
    /// into every 1-second window of server time, for any server time within [send, recv].
    #[test]
    fn no_server_window_exceeds_the_limit_under_random_latency() {
        let t0 = Instant::now();
        let mut rng = fastrand::Rng::with_seed(7);
        let mut b = WindowBucket::new(LIMITS);
        let mut now = t0;
        let mut server: Vec<(Instant, u64)> = Vec::new();
        let mut pending: Vec<(Ticket, Instant, Instant, u64)> = Vec::new();
        for _ in 0..20_000 {
            now += ms(rng.u64(0..7));
            // Finish requests whose response time has come.
            pending.sort_by_key(|p| p.2);
            while pending.first().is_some_and(|p| p.2 <= now) {
                let (t, _, recv, _) = pending.remove(0);
                b.complete(t, recv, (0, 0));
            }
            let (_, avail) = b.available(now);
            let want = rng.u64(1_000..200_000);
            if avail >= want && pending.len() < 4 {
                let t = b.spend(1, want);
                let rtt = ms(rng.u64(0..120));
                let s = now + Duration::from_nanos(rng.u64(0..=rtt.as_nanos() as u64));
                server.push((s, want));
                pending.push((t, now, now + rtt, want));
            }
        }
        server.sort_by_key(|s| s.0);
        let mut lo = 0;
        let mut sum = 0;
        for hi in 0..server.len() {
            sum += server[hi].1;
            while server[hi].0.duration_since(server[lo].0) >= WINDOW {
                sum -= server[lo].1;
                lo += 1;
            }
            assert!(sum <= LIMITS.bytes, "window ending at {hi} holds {sum}");
        }
    }

    #[test]
    fn throttling_slows_then_recovers() {
        let t0 = Instant::now();
        let mut b = WindowBucket::new(LIMITS);
        b.throttled(t0);
        b.throttled(t0 + ms(10)); // same window: no second decrease
        assert!((b.factor() - 0.8).abs() < 1e-9);
        assert_eq!(b.available(t0 + ms(10)).0, 800);
        let mut now = t0;
        for _ in 0..10 {
            now += WINDOW;
            b.available(now);
        }
        assert!((b.factor() - 1.0).abs() < 1e-9);
    }
}
