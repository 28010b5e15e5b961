//! The ways a mock miner misbehaves: cheating on content, lying about logprobs, breaking
//! the stream, or failing its health check. Each is named the way `--fault` spells it,
//! `name` or `name:argument`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fault {
    /// Greedy for N tokens, then tokens outside the baseline's top-5 (another model).
    WrongAfter(usize),
    /// At near-tie positions, take the runner-up with this probability (honest hardware
    /// nondeterminism; must pass).
    FlipTies(f64),
    /// Add uniform noise in ±sigma to every streamed logprob.
    Jitter(f64),
    /// Stream a confident 0.0 for every logprob.
    FakeLogprobs,
    /// Stream no logprobs although asked to.
    NoLogprobs,
    /// Stop after N tokens with `finish_reason: "stop"`.
    Truncate(usize),
    /// Compute at the honest pace but send everything at the end.
    Burst,
    /// After three content chunks, go silent for this long, then go on.
    Stall(Duration),
    /// Every content chunk after the first waits this much longer: a server that drips
    /// tokens just inside the stall timeout.
    Drip(Duration),
    /// Never finish: tokens forever, whatever `max_tokens` says.
    Endless,
    /// Ignore `max_tokens`: write four times as many tokens, then stop.
    Overlong,
    /// Send a lone space at once (to start the client's TTFT clock early), then the answer
    /// without its first leading space: the same text, split to cheat.
    LoneSpace,
    /// One data line of this many bytes after the first content chunk.
    OversizedChunk(usize),
    /// Bytes that are not UTF-8 inside a data line.
    InvalidUtf8,
    /// A data line that is not JSON.
    MalformedJson,
    /// An error object inside the 200 stream after a few tokens.
    ErrorMidStream,
    /// No `data: [DONE]` at the end.
    NoDone,
    /// The last chunk has no `finish_reason`.
    NoFinishReason,
    /// Answer chat requests with HTTP 500.
    Http500,
    /// A 200 `text/event-stream` body that is not server-sent events.
    GarbageSse,
    /// `/health` answers after this long.
    SlowHealth(Duration),
    /// `/health` answers 200 with its headers and a `content-length`, then never sends the
    /// promised body.
    HealthNoBody,
    /// `/health` answers 200 with a body that never ends.
    HealthEndlessBody,
    /// After every content chunk, this many valid but empty chunks: a stream bloated under
    /// the byte cap, every event of which the validator would keep.
    Bloat(usize),
    /// `/health` answers 503.
    FailingHealth,
    /// `/health` answers 503 until this long after the server started (a slow start-up).
    ReadyAfter(Duration),
    /// `/health` answers `302 Location: http://127.0.0.1:PORT/latest/meta-data/iam`: a
    /// validator that followed it would probe its own machine.
    RedirectHealth(u16),
}

impl Fault {
    /// Every spelling, for help texts.
    pub const NAMES: &'static str = "wrong-after:N, flip-ties:RATE, jitter:SIGMA, fake-logprobs, \
        no-logprobs, truncate:N, burst, stall:MS, drip:MS, endless, overlong, lone-space, oversized-chunk:BYTES, invalid-utf8, \
        malformed-json, error-mid-stream, no-done, no-finish-reason, http-500, garbage-sse, \
        slow-health:MS, failing-health, redirect-health:PORT, health-no-body, \
        health-endless-body, bloat:N, ready-after:MS";

    /// Whether this fault only bends the health check (the chat API stays honest).
    pub fn is_health_only(&self) -> bool {
        matches!(
            self,
            Fault::SlowHealth(_)
                | Fault::FailingHealth
                | Fault::RedirectHealth(_)
                | Fault::HealthNoBody
                | Fault::HealthEndlessBody
                | Fault::ReadyAfter(_)
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown fault `{0}`; known: {names}", names = Fault::NAMES)]
pub struct UnknownFault(String);

impl FromStr for Fault {
    type Err = UnknownFault;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || UnknownFault(s.to_string());
        let (name, arg) = match s.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (s, None),
        };
        let count =
            || -> Result<usize, UnknownFault> { arg.ok_or_else(bad)?.parse().map_err(|_| bad()) };
        let real = || -> Result<f64, UnknownFault> {
            let v: f64 = arg.ok_or_else(bad)?.parse().map_err(|_| bad())?;
            if v.is_finite() && v >= 0.0 {
                Ok(v)
            } else {
                Err(bad())
            }
        };
        let millis = || count().map(|ms| Duration::from_millis(ms as u64));
        let fault = match name {
            "wrong-after" => Fault::WrongAfter(count()?),
            "flip-ties" => Fault::FlipTies(real()?.min(1.0)),
            "jitter" => Fault::Jitter(real()?),
            "fake-logprobs" => Fault::FakeLogprobs,
            "no-logprobs" => Fault::NoLogprobs,
            "truncate" => Fault::Truncate(count()?),
            "burst" => Fault::Burst,
            "stall" => Fault::Stall(millis()?),
            "drip" => Fault::Drip(millis()?),
            "endless" => Fault::Endless,
            "overlong" => Fault::Overlong,
            "lone-space" => Fault::LoneSpace,
            "oversized-chunk" => Fault::OversizedChunk(count()?),
            "invalid-utf8" => Fault::InvalidUtf8,
            "malformed-json" => Fault::MalformedJson,
            "error-mid-stream" => Fault::ErrorMidStream,
            "no-done" => Fault::NoDone,
            "no-finish-reason" => Fault::NoFinishReason,
            "http-500" => Fault::Http500,
            "garbage-sse" => Fault::GarbageSse,
            "slow-health" => Fault::SlowHealth(millis()?),
            "failing-health" => Fault::FailingHealth,
            "health-no-body" => Fault::HealthNoBody,
            "health-endless-body" => Fault::HealthEndlessBody,
            "bloat" => Fault::Bloat(count()?),
            "ready-after" => Fault::ReadyAfter(millis()?),
            "redirect-health" => Fault::RedirectHealth(u16::try_from(count()?).map_err(|_| bad())?),
            _ => return Err(bad()),
        };
        // Argument-free faults take no argument.
        let takes_arg = matches!(
            fault,
            Fault::WrongAfter(_)
                | Fault::FlipTies(_)
                | Fault::Jitter(_)
                | Fault::Truncate(_)
                | Fault::Stall(_)
                | Fault::Drip(_)
                | Fault::OversizedChunk(_)
                | Fault::SlowHealth(_)
                | Fault::RedirectHealth(_)
                | Fault::Bloat(_)
                | Fault::ReadyAfter(_)
        );
        if takes_arg != arg.is_some() {
            return Err(bad());
        }
        Ok(fault)
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::WrongAfter(n) => write!(f, "wrong-after:{n}"),
            Fault::FlipTies(r) => write!(f, "flip-ties:{r}"),
            Fault::Jitter(s) => write!(f, "jitter:{s}"),
            Fault::FakeLogprobs => f.write_str("fake-logprobs"),
            Fault::NoLogprobs => f.write_str("no-logprobs"),
            Fault::Truncate(n) => write!(f, "truncate:{n}"),
            Fault::Burst => f.write_str("burst"),
            Fault::Stall(d) => write!(f, "stall:{}", d.as_millis()),
            Fault::Drip(d) => write!(f, "drip:{}", d.as_millis()),
            Fault::Endless => f.write_str("endless"),
            Fault::Overlong => f.write_str("overlong"),
            Fault::LoneSpace => f.write_str("lone-space"),
            Fault::OversizedChunk(n) => write!(f, "oversized-chunk:{n}"),
            Fault::InvalidUtf8 => f.write_str("invalid-utf8"),
            Fault::MalformedJson => f.write_str("malformed-json"),
            Fault::ErrorMidStream => f.write_str("error-mid-stream"),
            Fault::NoDone => f.write_str("no-done"),
            Fault::NoFinishReason => f.write_str("no-finish-reason"),
            Fault::Http500 => f.write_str("http-500"),
            Fault::GarbageSse => f.write_str("garbage-sse"),
            Fault::SlowHealth(d) => write!(f, "slow-health:{}", d.as_millis()),
            Fault::FailingHealth => f.write_str("failing-health"),
            Fault::RedirectHealth(port) => write!(f, "redirect-health:{port}"),
            Fault::HealthNoBody => f.write_str("health-no-body"),
            Fault::HealthEndlessBody => f.write_str("health-endless-body"),
            Fault::Bloat(n) => write!(f, "bloat:{n}"),
            Fault::ReadyAfter(d) => write!(f, "ready-after:{}", d.as_millis()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_round_trips_and_arguments_are_checked() {
        for spelled in Fault::NAMES.split(", ") {
            let example = spelled
                .replace(":N", ":7")
                .replace(":RATE", ":0.5")
                .replace(":SIGMA", ":0.05")
                .replace(":MS", ":250")
                .replace(":PORT", ":8080")
                .replace(":BYTES", ":4096");
            let fault: Fault = example.parse().unwrap();
            assert_eq!(fault.to_string(), example);
        }
        for bad in [
            "",
            "burst:1",
            "truncate",
            "truncate:x",
            "jitter:-1",
            "jitter:NaN",
            "nope",
        ] {
            assert!(bad.parse::<Fault>().is_err(), "{bad}");
        }
    }
}
