//! The values options take, read strictly: digits only, no sign, no
//! exponent, no overflow, and each option's range. Messages quote the
//! value as typed. -C, -G and -W read their numbers as tcpdump does.

use std::time::Duration;

use crate::options::FILE_SIZE_UNIT;

/// Seconds as a decimal number with up to nine decimals (`10`, `2.5`,
/// `.5`): no sign, no exponent, no overflow.
pub fn parse_seconds(s: &str) -> Option<Duration> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() && frac.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 9
    {
        return None;
    }
    let secs: u64 = if int.is_empty() { 0 } else { int.parse().ok()? };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().ok()?
    };
    Some(Duration::new(secs, nanos))
}

/// A plain decimal number: digits only, no sign, no overflow.
pub fn parse_decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The shortest interval --interval takes.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// The longest: a day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Parses `--interval=SECONDS`: a decimal number (`1`, `0.5`, `.25`,
/// `2.`) of at most nanosecond precision, from 0.1 to 86400. `None` for
/// anything else (no signs, exponents, `inf`, spaces).
pub fn parse_interval(s: &str) -> Option<Duration> {
    parse_seconds(s).filter(|d| (MIN_INTERVAL..=MAX_INTERVAL).contains(d))
}

fn positive(s: &str) -> Option<u64> {
    // Digits only: no sign, no space, no suffix (tcpdump takes the number
    // with strtol and rejects anything left over).
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>().ok().filter(|&n| n > 0)
}

/// The -C argument: a positive number of million bytes.
pub fn parse_file_size(s: &str) -> Result<u64, String> {
    positive(s)
        .and_then(|n| n.checked_mul(FILE_SIZE_UNIT))
        .ok_or_else(|| format!("Invalid file size '{s}'."))
}

/// The -G argument: a positive number of seconds.
pub fn parse_rotate_seconds(s: &str) -> Result<u64, String> {
    positive(s)
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(|| format!("Invalid rotate seconds '{s}'."))
}

/// The -W argument: a positive number of files.
pub fn parse_file_count(s: &str) -> Result<u32, String> {
    positive(s)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| format!("Invalid file count '{s}'."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_positive_numbers_only() {
        assert_eq!(parse_file_size("1"), Ok(1_000_000));
        assert_eq!(parse_file_size("250"), Ok(250_000_000));
        for bad in [
            "0",
            "-1",
            "",
            "1.5",
            "1k",
            " 1",
            "+1",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_file_size(bad),
                Err(format!("Invalid file size '{bad}'.")),
                "{bad}"
            );
        }
        // Would overflow once multiplied by a million.
        assert!(parse_file_size("18446744073710").is_err());
        assert_eq!(parse_rotate_seconds("3600"), Ok(3600));
        assert!(parse_rotate_seconds("0").is_err());
        assert!(parse_rotate_seconds("1m").is_err());
        assert_eq!(parse_file_count("10"), Ok(10));
        assert!(parse_file_count("0").is_err());
        assert!(parse_file_count("4294967296").is_err());
        assert_eq!(
            parse_file_count("x"),
            Err("Invalid file count 'x'.".to_string())
        );
    }

    #[test]
    fn intervals() {
        let ms = Duration::from_millis;
        assert_eq!(parse_interval("1"), Some(ms(1000)));
        assert_eq!(parse_interval("0.1"), Some(ms(100)));
        assert_eq!(parse_interval(".25"), Some(ms(250)));
        assert_eq!(parse_interval("2."), Some(ms(2000)));
        assert_eq!(parse_interval("1.000000001"), Some(Duration::new(1, 1)));
        assert_eq!(parse_interval("86400"), Some(Duration::from_secs(86_400)));
        for bad in [
            "",
            ".",
            "0",
            "0.09",
            "0.0999999999",
            "-1",
            "+1",
            "1e3",
            "inf",
            "nan",
            " 1",
            "1 ",
            "1,5",
            "86400.1",
            "99999999999999999999999",
            "1.2.3",
            "0x10",
        ] {
            assert_eq!(parse_interval(bad), None, "{bad:?}");
        }
    }
}
