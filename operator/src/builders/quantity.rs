//! Kubernetes quantities (`1Gi`, `512M`, `1.5Gi`, `1e9`) as whole bytes. k8s-openapi keeps a
//! `Quantity` as its string and ships no parser; this covers the serialisation format of
//! `resource.Quantity` for non-negative values, rounding a fraction of a byte up as
//! `Quantity.Value()` does.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{quantity:?} is not a quantity of bytes: {why}")]
pub struct QuantityError {
    quantity: String,
    why: &'static str,
}

/// The quantity in bytes, rounded up.
pub fn to_bytes(quantity: &Quantity) -> Result<u64, QuantityError> {
    let text = quantity.0.trim();
    let error = |why| QuantityError {
        quantity: text.to_string(),
        why,
    };
    let text = text.strip_prefix('+').unwrap_or(text);
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() {
        return Err(error("no digits"));
    }
    if fraction.contains('.') {
        return Err(error("more than one decimal point"));
    }
    let digits: u128 = format!("{whole}{fraction}")
        .parse()
        .map_err(|_| error("too many digits"))?;
    let (mut numerator, mut denominator) = (digits, pow10(fraction.len()).ok_or(error("too many digits"))?);
    match multiplier(suffix).ok_or(error("unknown suffix"))? {
        Scale::Times(factor) => numerator = numerator.checked_mul(factor).ok_or(error("too large"))?,
        Scale::Divided(divisor) => {
            denominator = denominator.checked_mul(divisor).ok_or(error("too many digits"))?
        }
    }
    u64::try_from(numerator.div_ceil(denominator)).map_err(|_| error("too large"))
}

enum Scale {
    Times(u128),
    Divided(u128),
}

fn multiplier(suffix: &str) -> Option<Scale> {
    let binary = |power: u32| Some(Scale::Times(1u128 << (10 * power)));
    let decimal = |exponent: i32| match exponent {
        e if e >= 0 => pow10(e.unsigned_abs() as usize).map(Scale::Times),
        e => pow10(e.unsigned_abs() as usize).map(Scale::Divided),
    };
    match suffix {
        "" => decimal(0),
        "Ki" => binary(1),
        "Mi" => binary(2),
        "Gi" => binary(3),
        "Ti" => binary(4),
        "Pi" => binary(5),
        "Ei" => binary(6),
        "n" => decimal(-9),
        "u" => decimal(-6),
        "m" => decimal(-3),
        "k" => decimal(3),
        "M" => decimal(6),
        "G" => decimal(9),
        "T" => decimal(12),
        "P" => decimal(15),
        "E" => decimal(18),
        exponent => {
            let digits = exponent.strip_prefix(['e', 'E'])?;
            decimal(digits.parse().ok()?)
        }
    }
}

fn pow10(exponent: usize) -> Option<u128> {
    10u128.checked_pow(u32::try_from(exponent).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Result<u64, QuantityError> {
        to_bytes(&Quantity(text.to_string()))
    }

    #[test]
    fn binary_and_decimal_suffixes() {
        assert_eq!(bytes("256Mi"), Ok(256 * 1024 * 1024));
        assert_eq!(bytes("1Gi"), Ok(1 << 30));
        assert_eq!(bytes("2Ti"), Ok(2 << 40));
        assert_eq!(bytes("1G"), Ok(1_000_000_000));
        assert_eq!(bytes("500M"), Ok(500_000_000));
        assert_eq!(bytes("1k"), Ok(1000));
        assert_eq!(bytes("1073741824"), Ok(1 << 30));
    }

    #[test]
    fn fractions_exponents_and_milli_round_up_to_whole_bytes() {
        assert_eq!(bytes("1.5Gi"), Ok(3 << 29));
        assert_eq!(bytes("0.5Ki"), Ok(512));
        assert_eq!(bytes("1e9"), Ok(1_000_000_000));
        assert_eq!(bytes("1E3"), Ok(1000));
        assert_eq!(bytes("1500m"), Ok(2));
        assert_eq!(bytes("+1Mi"), Ok(1 << 20));
    }

    #[test]
    fn garbage_is_refused_with_the_value_named() {
        for text in ["", "Gi", "-1Gi", "1GB", "1.2.3", "1 Gi", "99999999999Ei"] {
            let error = bytes(text).expect_err(text);
            assert!(error.to_string().contains(&format!("{text:?}")), "{error}");
        }
    }
}
