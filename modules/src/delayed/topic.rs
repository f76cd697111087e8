//! `$delayed/<seconds>/<topic>`: what a publish topic asks for.

/// The prefix, as EMQX and rmqtt spell it (case-sensitive).
pub const PREFIX: &str = "$delayed";

/// What a publish topic says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// Not `$delayed` nor `$delayed/…`: an ordinary topic.
    Ordinary,
    /// Publish `topic` after `seconds` (saturated at `u64::MAX` when the
    /// number is longer than that: it is over any `max_delay`).
    Delayed { seconds: u64, topic: &'a str },
    /// `$delayed/…` that cannot be honoured.
    Malformed(Malformed),
}

/// Why a `$delayed/…` topic cannot be honoured (answered with v5 0x90,
/// topic name invalid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// `$delayed`, `$delayed/` or `$delayed//t`.
    MissingSeconds,
    /// The seconds level is not a plain decimal number (`$delayed/1.5/t`,
    /// `$delayed/-1/t`, `$delayed/+1/t`).
    InvalidSeconds,
    /// `$delayed/5` or `$delayed/5/`.
    MissingTopic,
    /// The real topic is under `$SYS`, which only the broker publishes.
    SysTopic,
    /// The real topic is itself `$delayed/…`.
    Nested,
}

impl Malformed {
    pub fn as_str(self) -> &'static str {
        match self {
            Malformed::MissingSeconds => "missing seconds",
            Malformed::InvalidSeconds => "seconds not a decimal number",
            Malformed::MissingTopic => "missing topic",
            Malformed::SysTopic => "a $SYS topic",
            Malformed::Nested => "a $delayed topic inside another",
        }
    }
}

/// Reads a publish topic.
pub fn parse(topic: &str) -> Parsed<'_> {
    let Some(rest) = topic.strip_prefix(PREFIX) else { return Parsed::Ordinary };
    let rest = match rest.strip_prefix('/') {
        Some(rest) => rest,
        None if rest.is_empty() => return Parsed::Malformed(Malformed::MissingSeconds),
        // `$delayedfoo/…`
        None => return Parsed::Ordinary,
    };
    let (seconds, real) = match rest.split_once('/') {
        Some(parts) => parts,
        None if rest.is_empty() => return Parsed::Malformed(Malformed::MissingSeconds),
        None => return Parsed::Malformed(Malformed::MissingTopic),
    };
    if seconds.is_empty() {
        return Parsed::Malformed(Malformed::MissingSeconds);
    }
    if !seconds.bytes().all(|b| b.is_ascii_digit()) {
        return Parsed::Malformed(Malformed::InvalidSeconds);
    }
    // Only digits: the one possible error is overflow.
    let seconds = seconds.parse::<u64>().unwrap_or(u64::MAX);
    if real.is_empty() {
        return Parsed::Malformed(Malformed::MissingTopic);
    }
    if real == "$SYS" || real.starts_with("$SYS/") {
        return Parsed::Malformed(Malformed::SysTopic);
    }
    if real == PREFIX || real.starts_with("$delayed/") {
        return Parsed::Malformed(Malformed::Nested);
    }
    Parsed::Delayed { seconds, topic: real }
}
