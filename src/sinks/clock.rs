//! Calendar fields of packet time (UTC), for file names and date-partitioned directories. A few lines
//! of arithmetic rather than a date crate: nothing else in vxtap needs calendars or time zones.

use std::fmt;

use crate::base::Timestamp;

/// A UTC calendar time, to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtcTime {
    /// Year.
    pub year: i64,
    /// Month, 1–12.
    pub month: u32,
    /// Day of the month, 1–31.
    pub day: u32,
    /// Hour, 0–23.
    pub hour: u32,
    /// Minute, 0–59.
    pub minute: u32,
    /// Second, 0–59.
    pub second: u32,
}

impl UtcTime {
    /// The calendar time of `ts`.
    pub fn of(ts: Timestamp) -> UtcTime {
        let secs = ts.secs();
        let days = (secs / 86_400) as i64;
        let rem = (secs % 86_400) as u32;
        // Days since 1970-01-01 to a proleptic Gregorian date (the well-known era-based conversion:
        // 400-year eras of 146,097 days, years starting in March so leap days fall last).
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        UtcTime {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
        }
    }

    /// `YYYYMMDDTHHMMSSZ`, the compact ISO 8601 form used in file names.
    pub fn compact(&self) -> impl fmt::Display + '_ {
        Compact(self, true)
    }

    /// `YYYYMMDDTHHMMZ`, the form in AWS's flow log object names.
    pub fn compact_minutes(&self) -> impl fmt::Display + '_ {
        Compact(self, false)
    }
}

struct Compact<'a>(&'a UtcTime, bool);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = self.0;
        write!(
            f,
            "{:04}{:02}{:02}T{:02}{:02}",
            t.year, t.month, t.day, t.hour, t.minute
        )?;
        if self.1 {
            write!(f, "{:02}", t.second)?;
        }
        f.write_str("Z")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        let t = |s| UtcTime::of(Timestamp::from_secs(s));
        assert_eq!(t(0).compact().to_string(), "19700101T000000Z");
        // `date -u -d @1431280876`: Sun May 10 18:01:16 UTC 2015 (AWS's flow log example).
        assert_eq!(t(1_431_280_876).compact().to_string(), "20150510T180116Z");
        // A leap day, and the day after.
        assert_eq!(t(1_709_164_800).compact().to_string(), "20240229T000000Z");
        assert_eq!(t(1_709_251_199).compact().to_string(), "20240229T235959Z");
        assert_eq!(
            t(1_709_251_200).compact_minutes().to_string(),
            "20240301T0000Z"
        );
        // 2000 was a leap year (divisible by 400), 2100 will not be.
        assert_eq!(t(951_782_400).compact().to_string(), "20000229T000000Z");
        assert_eq!(t(4_107_542_400).compact().to_string(), "21000301T000000Z");
    }
}
