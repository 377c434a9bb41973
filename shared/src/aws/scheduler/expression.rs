//! The domain's schedules in EventBridge Scheduler's expression syntax: `at()`, `rate()` and
//! 6-field `cron()` with its own day-of-week numbering; what it cannot express is refused.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};

use super::plan::unsupported;
use crate::ports::SchedulerError;

/// `at(yyyy-mm-ddThh:mm:ss)` in UTC (the spec's timezone says so).
pub fn at_expression(at: DateTime<Utc>) -> String {
    format!("at({})", at.format("%Y-%m-%dT%H:%M:%S"))
}

/// `rate(...)` for a recurring interval, in the largest whole unit. Never rounds.
pub fn rate_expression(every_seconds: u64) -> Result<String, SchedulerError> {
    if every_seconds == 0 || every_seconds % 60 != 0 {
        return Err(unsupported(
            "schedule.every_seconds",
            format!(
                "EventBridge Scheduler fires at most once a minute: use a multiple of 60 seconds \
                 (got {every_seconds})"
            ),
        ));
    }
    let minutes = every_seconds / 60;
    let (value, unit) = if minutes % (24 * 60) == 0 {
        (minutes / (24 * 60), "day")
    } else if minutes % 60 == 0 {
        (minutes / 60, "hour")
    } else {
        (minutes, "minute")
    };
    let plural = if value == 1 { "" } else { "s" };
    Ok(format!("rate({value} {unit}{plural})"))
}

/// Maps a 5-field cron expression (or 6-field with seconds first) to EventBridge's 6-field
/// `cron(minute hour day-of-month month day-of-week year)`.
pub fn cron_expression(expression: &str) -> Result<String, SchedulerError> {
    const FIELD: &str = "schedule.expression";
    let upper = expression.to_ascii_uppercase();
    let fields: Vec<&str> = upper.split_whitespace().collect();
    let five = match fields.as_slice() {
        [_, _, _, _, _] => &fields[..],
        [seconds, rest @ ..] if rest.len() == 5 => {
            // EventBridge has no seconds field; only "at second 0" means the same thing.
            if seconds.parse::<u8>() != Ok(0) {
                return Err(unsupported(
                    FIELD,
                    format!(
                        "EventBridge Scheduler cron expressions have minute precision: the seconds \
                         field must be 0 (got {seconds:?})"
                    ),
                ));
            }
            rest
        }
        _ => {
            return Err(unsupported(
                FIELD,
                "expected 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first",
            ));
        }
    };
    let [minute, hour, dom, month, dow] = five else {
        return Err(unsupported(FIELD, "expected 5 fields"));
    };
    let any = |f: &str| f == "*" || f == "?";
    // EventBridge needs exactly one of the two day fields to be `?`.
    let (dom, dow) = match (any(dom), any(dow)) {
        (true, true) => ("*".to_string(), "?".to_string()),
        (false, true) => (dom.to_string(), "?".to_string()),
        (true, false) => ("?".to_string(), day_of_week(dow)?),
        (false, false) => {
            return Err(unsupported(
                FIELD,
                "EventBridge Scheduler cannot restrict both day-of-month and day-of-week (standard \
                 cron fires when either matches): restrict one of them and use * in the other",
            ));
        }
    };
    Ok(format!("cron({minute} {hour} {dom} {month} {dow} *)"))
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// A standard cron day token: 0-7 (0 and 7 are Sunday) or a name; Sunday is 0.
fn day_number(token: &str) -> Option<u8> {
    if let Some(i) = DAY_NAMES.iter().position(|n| *n == token) {
        return u8::try_from(i).ok();
    }
    token.parse::<u8>().ok().filter(|d| *d <= 7).map(|d| d % 7)
}

/// Standard day (0 = Sunday) to EventBridge's (1 = Sunday .. 7 = Saturday).
fn eventbridge_day(day: u8) -> u8 {
    day % 7 + 1
}

/// Maps a restricted day-of-week field to EventBridge numbering and syntax. Names mean the same
/// on both sides and pass through; numbers shift by one; steps, which EventBridge does not allow
/// in this field, are expanded into the days they select.
fn day_of_week(field: &str) -> Result<String, SchedulerError> {
    let cannot = |why: &str| {
        unsupported(
            "schedule.expression",
            format!("EventBridge Scheduler cannot express day-of-week {field:?}: {why}"),
        )
    };
    let is_name = |t: &str| DAY_NAMES.contains(&t);
    let parts: Vec<&str> = field.split(',').collect();

    // `d#n` (n-th weekday of the month) and `dL` (last one): EventBridge allows one such term.
    if field.contains('#') || field.ends_with('L') || field.contains("L,") {
        let [part] = parts.as_slice() else {
            return Err(cannot(
                "a '#' or 'L' term must be the only term in the field",
            ));
        };
        let (day, suffix) = match part.split_once('#') {
            Some((day, nth)) => (day, format!("#{nth}")),
            None => (part.trim_end_matches('L'), "L".to_string()),
        };
        if is_name(day) {
            return Ok(format!("{day}{suffix}"));
        }
        let day = day_number(day).ok_or_else(|| cannot("unknown day"))?;
        return Ok(format!("{}{suffix}", eventbridge_day(day)));
    }

    // Plain names and name ranges read the same on EventBridge.
    let name_term = |p: &str| match p.split_once('-') {
        Some((a, b)) => is_name(a) && is_name(b),
        None => is_name(p),
    };
    if parts.iter().all(|p| name_term(p)) {
        return Ok(field.to_string());
    }

    let mut days = BTreeSet::new();
    for part in &parts {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step = step
                    .parse::<u8>()
                    .ok()
                    .filter(|s| *s > 0)
                    .ok_or_else(|| cannot("invalid step"))?;
                (range, Some(step))
            }
            None => (*part, None),
        };
        // Raw bounds keep 7 as 7 so a step walks the same values as the domain's parser (0..=7).
        let bound = |t: &str| -> Result<u8, SchedulerError> {
            match DAY_NAMES.iter().position(|n| *n == t) {
                Some(i) => u8::try_from(i).map_err(|_| cannot("unknown day")),
                None => t
                    .parse::<u8>()
                    .ok()
                    .filter(|d| *d <= 7)
                    .ok_or_else(|| cannot("unknown day")),
            }
        };
        let (from, to) = match range.split_once('-') {
            Some((a, b)) => (bound(a)?, bound(b)?),
            None if range == "*" => (0, 7),
            None if step.is_some() => (bound(range)?, 7),
            None => {
                let d = bound(range)?;
                (d, d)
            }
        };
        if from > to {
            return Err(cannot("a range must not wrap around the week"));
        }
        for d in (from..=to).step_by(usize::from(step.unwrap_or(1))) {
            days.insert(eventbridge_day(d % 7));
        }
    }
    Ok(compact(&days))
}

/// `1,2,3,5` -> `1-3,5`.
fn compact(days: &BTreeSet<u8>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut run: Option<(u8, u8)> = None;
    let flush = |run: (u8, u8), out: &mut Vec<String>| {
        out.push(if run.0 == run.1 {
            run.0.to_string()
        } else {
            format!("{}-{}", run.0, run.1)
        });
    };
    for &d in days {
        run = match run {
            Some((a, b)) if d == b + 1 => Some((a, d)),
            Some(r) => {
                flush(r, &mut out);
                Some((d, d))
            }
            None => Some((d, d)),
        };
    }
    if let Some(r) = run {
        flush(r, &mut out);
    }
    out.join(",")
}
