//! The proleptic Gregorian calendar from a count of days since 1970-01-01 (UTC), as Howard
//! Hinnant's public-domain `civil_from_days` computes it: the one conversion the tree needs to
//! print times without a date-time crate.

/// The (year, month, day) of day `days` since 1970-01-01.
pub fn date_of_day(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month as u32, day as u32)
}

/// `secs` since the epoch as (year, month, day, hour, minute, second), UTC.
pub fn utc(secs: u64) -> (i64, u32, u32, u64, u64, u64) {
    let (y, m, d) = date_of_day(i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2));
    let s = secs % 86_400;
    (y, m, d, s / 3600, s / 60 % 60, s % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_days() {
        assert_eq!(date_of_day(0), (1970, 1, 1));
        assert_eq!(date_of_day(11_016), (2000, 2, 29));
        assert_eq!(date_of_day(19_782), (2024, 2, 29));
        assert_eq!(date_of_day(-1), (1969, 12, 31));
        assert_eq!(utc(951_782_400 + 3_723), (2000, 2, 29, 1, 2, 3));
    }
}
