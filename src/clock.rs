//! Wall-clock times as the contract writes them. (Protocols read no clock;
//! the daemon stamps what they report.)

use time::OffsetDateTime;

/// RFC 3339 UTC with milliseconds, as the contract shows.
pub fn rfc3339_ms(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.to_offset(time::UtcOffset::UTC)
        .format(&fmt)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Now, as [`rfc3339_ms`] writes it.
pub fn now_rfc3339() -> String {
    rfc3339_ms(OffsetDateTime::now_utc())
}
