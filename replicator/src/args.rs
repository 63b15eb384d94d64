//! Value parsers shared by both command lines: every option is checked by
//! clap itself, so a bad value is a usage error (exit 2) said in one line,
//! and the library's own names and parsers are the only ones.

use std::str::FromStr;
use std::time::Duration;

use clap::builder::{PossibleValuesParser, TypedValueParser};

/// One of a library type's names (`T::NAMES`), parsed by its `FromStr`:
/// the names show in `--help` and in completions.
pub fn choice<T>(names: &'static [&'static str]) -> impl TypedValueParser<Value = T>
where
    T: FromStr + Clone + Send + Sync + 'static,
    T::Err: std::error::Error + Send + Sync + 'static,
{
    PossibleValuesParser::new(names).try_map(|name| name.parse::<T>())
}

/// A duration such as `250ms`, `2s` or `1h`, more than zero.
pub fn duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

/// A duration, or `0` (zero: off).
pub fn duration_or_zero(text: &str) -> Result<Duration, String> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    duration(text)
}

/// A `--target` or `--from` address: a bad one is a usage error said in
/// one line that never echoes credentials (clap's own message would quote
/// the raw value).
#[derive(Clone, Copy, Debug)]
pub struct Checked<T>(std::marker::PhantomData<fn() -> T>);

impl<T> Checked<T> {
    /// A parser of `T`.
    pub fn new() -> Self {
        Checked(std::marker::PhantomData)
    }
}

impl<T> Default for Checked<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> TypedValueParser for Checked<T>
where
    T: FromStr<Err = cdc::Error> + Clone + Send + Sync + 'static,
{
    type Value = T;

    fn parse_ref(
        &self,
        _cmd: &clap::Command,
        _arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<T, clap::Error> {
        use clap::error::ErrorKind;
        let text =
            value.to_str().ok_or_else(|| clap::Error::raw(ErrorKind::InvalidUtf8, "the address is not UTF-8\n"))?;
        text.parse().map_err(|e: cdc::Error| clap::Error::raw(ErrorKind::ValueValidation, format!("{e}\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_positive_or_off() {
        assert_eq!(duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(duration("0s").is_err());
        assert!(duration("soon").is_err());
        assert_eq!(duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(duration_or_zero("30s"), Ok(Duration::from_secs(30)));
    }
}
