//! The time zone a page writes and reads times in: the caller's own (their browser's IANA
//! zone, which `static/live.js` keeps in the `hl_tz` cookie and puts in each form's `tz`
//! field), or the centre's configured zone (`http.time_zone`) when the browser has not said,
//! e.g. without JavaScript. Always named on the page next to the times it applies to.
//!
//! Zones come from the system's tz database (jiff reads /usr/share/zoneinfo), so daylight
//! saving is right on both sides of a change. A zone name the database does not know is
//! ignored (the centre's zone is used): the cookie and the field are the caller's to forge.

use jiff::civil::DateTime;
use jiff::tz::TimeZone;

use crate::centre::Timestamp;

/// Name of the cookie holding the browser's zone.
pub const COOKIE: &str = "hl_tz";
/// Longest zone name taken from a cookie or a form ("America/Argentina/ComodRivadavia" is 32).
const MAX_NAME: usize = 64;

/// A named time zone, and whether it is the caller's own or the centre's.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    tz: TimeZone,
    callers: bool,
}

impl Zone {
    pub fn utc() -> Zone {
        Zone {
            name: "UTC".to_owned(),
            tz: TimeZone::UTC,
            callers: false,
        }
    }

    /// The centre's zone by IANA name ("Europe/London", "UTC"); `None` if unknown.
    pub fn centre(name: &str) -> Option<Zone> {
        Self::named(name, false)
    }

    /// The caller's zone by IANA name, if the database knows it.
    pub fn callers(name: &str) -> Option<Zone> {
        Self::named(name, true)
    }

    fn named(name: &str, callers: bool) -> Option<Zone> {
        let name = name.trim();
        if name.is_empty()
            || name.len() > MAX_NAME
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        {
            return None;
        }
        let tz = if name.eq_ignore_ascii_case("UTC") {
            TimeZone::UTC
        } else {
            TimeZone::get(name).ok()?
        };
        Some(Zone {
            name: name.to_owned(),
            tz,
            callers,
        })
    }

    /// The zone of a request: its `hl_tz` cookie when it names a known zone, else `centre`.
    pub fn of_request(headers: &axum::http::HeaderMap, centre: &Zone) -> Zone {
        headers
            .get_all(axum::http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|h| h.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, _)| *name == COOKIE)
            .and_then(|(_, value)| Self::callers(&value.replace("%2F", "/")))
            .unwrap_or_else(|| centre.clone())
    }

    /// The zone a form's times were typed in: its `tz` field when known, else `page`.
    pub fn of_form(field: Option<&str>, page: &Zone) -> Zone {
        field
            .and_then(Self::callers)
            .unwrap_or_else(|| page.clone())
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// How the page names it: "your time, Europe/Paris" or "centre time, UTC".
    pub fn label(&self) -> String {
        if self.callers {
            format!("your time, {}", self.name)
        } else {
            format!("our time, {}", self.name)
        }
    }

    fn civil(&self, t: Timestamp) -> Option<DateTime> {
        let ms = i64::try_from(t.0).ok()?;
        let ts = jiff::Timestamp::from_millisecond(ms).ok()?;
        Some(ts.to_zoned_datetime(self.tz.clone()).datetime())
    }

    fn format(&self, t: Timestamp, pattern: &str) -> String {
        let Ok(ms) = i64::try_from(t.0) else {
            return String::new();
        };
        match jiff::Timestamp::from_millisecond(ms) {
            Ok(ts) => ts
                .to_zoned_datetime(self.tz.clone())
                .strftime(pattern)
                .to_string(),
            Err(_) => String::new(),
        }
    }

    /// "2026-11-24 10:05 CET" (the zone's abbreviation; "UTC" in UTC).
    pub fn time(&self, t: Timestamp) -> String {
        self.format(t, "%Y-%m-%d %H:%M %Z")
    }

    /// "14:02 CET"
    pub fn clock(&self, t: Timestamp) -> String {
        self.format(t, "%H:%M %Z")
    }

    /// The local day of `t` (for "same day as the attempt before?").
    pub fn day(&self, t: Timestamp) -> Option<jiff::civil::Date> {
        self.civil(t).map(|d| d.date())
    }

    /// The `datetime-local` value of `t` in this zone ("2026-11-24T10:05").
    pub fn datetime_local(&self, t: Timestamp) -> String {
        self.format(t, "%Y-%m-%dT%H:%M")
    }

    /// The start of the `minutes`-long interval of the local day holding `t` (15, 60, or
    /// 1440 for the day), as an instant: report intervals follow the centre's clock, so a
    /// day is a local day across daylight-saving changes.
    pub fn interval_start(&self, t: Timestamp, minutes: u32) -> Timestamp {
        let Some(civil) = self.civil(t) else {
            return t;
        };
        let day = civil.date();
        let start = if minutes >= 1440 {
            day.to_datetime(jiff::civil::Time::midnight())
        } else {
            let of_day = i32::from(civil.hour()) * 60 + i32::from(civil.minute());
            let m = i32::try_from(minutes.max(1)).unwrap_or(60);
            let floored = of_day / m * m;
            let (h, mi) = (floored / 60, floored % 60);
            let (Ok(h), Ok(mi)) = (i8::try_from(h), i8::try_from(mi)) else {
                return t;
            };
            day.at(h, mi, 0, 0)
        };
        // A local time a change skipped: the later offset, as `parse_datetime_local`.
        start
            .to_zoned_datetime(self.tz.clone())
            .ok()
            .and_then(|z| u64::try_from(z.timestamp().as_millisecond()).ok())
            .map_or(t, Timestamp)
    }

    /// A `datetime-local` value typed in this zone, as an instant. A time a daylight-saving
    /// change skips or repeats is taken the way RFC 5545 does (the later offset for a gap,
    /// the earlier for a fold).
    pub fn parse_datetime_local(&self, s: &str) -> Option<Timestamp> {
        // Checked (shape, range, real date) by the UTC reading, then re-read as civil time.
        let utc = super::words::parse_datetime_local(s)?;
        let civil = Zone::utc().civil(utc)?;
        let zoned = civil.to_zoned_datetime(self.tz.clone()).ok()?;
        u64::try_from(zoned.timestamp().as_millisecond())
            .ok()
            .map(Timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_and_read_in_the_zone_daylight_saving_included() {
        let paris = Zone::callers("Europe/Paris").expect("the tz database has Paris");
        // Winter: UTC+1; summer: UTC+2.
        let winter = paris.parse_datetime_local("2026-11-24T10:00").unwrap();
        assert_eq!(Zone::utc().time(winter), "2026-11-24 09:00 UTC");
        assert_eq!(paris.time(winter), "2026-11-24 10:00 CET");
        assert_eq!(paris.datetime_local(winter), "2026-11-24T10:00");
        let summer = paris.parse_datetime_local("2026-07-01T10:00").unwrap();
        assert_eq!(Zone::utc().clock(summer), "08:00 UTC");
        assert_eq!(paris.clock(summer), "10:00 CEST");
        assert_eq!(paris.label(), "your time, Europe/Paris");
        assert_eq!(Zone::utc().label(), "our time, UTC");
        // The same typed value in UTC is another instant.
        assert_eq!(
            Zone::utc()
                .parse_datetime_local("2026-11-24T10:00")
                .unwrap()
                .0
                - winter.0,
            3_600_000
        );
        assert_eq!(paris.parse_datetime_local("2026-02-30T10:00"), None);
    }

    #[test]
    fn unknown_or_odd_names_fall_back_to_the_centres_zone() {
        let centre = Zone::centre("UTC").unwrap();
        for bad in [
            "",
            "Mars/Olympus",
            "../../etc/passwd",
            "Europe/Paris\0",
            &"A".repeat(80),
        ] {
            assert!(Zone::callers(bad).is_none(), "{bad:?}");
            assert_eq!(Zone::of_form(Some(bad), &centre).name(), "UTC");
        }
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(
            axum::http::header::COOKIE,
            "hl_session=x; hl_tz=America%2FNew_York".parse().unwrap(),
        );
        let z = Zone::of_request(&headers, &centre);
        assert_eq!(z.name(), "America/New_York");
        assert_eq!(z.label(), "your time, America/New_York");
        assert_eq!(
            Zone::of_request(&axum::http::HeaderMap::new(), &centre).name(),
            "UTC"
        );
    }
}
