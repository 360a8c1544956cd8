//! Built-in functions (reference §2.8, `query/builtins/*.cs`): names, signatures and semantics.
//!
//! Names are case-insensitive. Arity and argument types are checked at compile time; at run
//! time an undefined argument, or a `$body` value of the wrong type, gives undefined. String
//! positions and lengths count UTF-16 code units and comparisons are ordinal, as in .NET.

use std::borrow::Cow;

use crate::types::Type;
use crate::value::Value;

/// The built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Function {
    Abs,
    Exp,
    Power,
    Square,
    Ceiling,
    Floor,
    Sign,
    Sqrt,
    AsNumber,
    IsBool,
    IsDefined,
    IsNull,
    IsNumber,
    IsString,
    Concat,
    Length,
    Lower,
    Upper,
    Substring,
    IndexOf,
    StartsWith,
    EndsWith,
    Contains,
    TwinChangeIncludes,
}

const ALL: [Function; 24] = [
    Function::Abs,
    Function::Exp,
    Function::Power,
    Function::Square,
    Function::Ceiling,
    Function::Floor,
    Function::Sign,
    Function::Sqrt,
    Function::AsNumber,
    Function::IsBool,
    Function::IsDefined,
    Function::IsNull,
    Function::IsNumber,
    Function::IsString,
    Function::Concat,
    Function::Length,
    Function::Lower,
    Function::Upper,
    Function::Substring,
    Function::IndexOf,
    Function::StartsWith,
    Function::EndsWith,
    Function::Contains,
    Function::TwinChangeIncludes,
];

/// The names of all built-in functions.
pub(crate) fn names() -> Vec<&'static str> {
    ALL.iter().map(|f| f.name()).collect()
}

impl Function {
    /// The function named `name`, ignoring case.
    pub(crate) fn from_name(name: &str) -> Option<Self> {
        ALL.iter()
            .copied()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// The canonical name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Function::Abs => "abs",
            Function::Exp => "exp",
            Function::Power => "power",
            Function::Square => "square",
            Function::Ceiling => "ceiling",
            Function::Floor => "floor",
            Function::Sign => "sign",
            Function::Sqrt => "sqrt",
            Function::AsNumber => "as_number",
            Function::IsBool => "is_bool",
            Function::IsDefined => "is_defined",
            Function::IsNull => "is_null",
            Function::IsNumber => "is_number",
            Function::IsString => "is_string",
            Function::Concat => "concat",
            Function::Length => "length",
            Function::Lower => "lower",
            Function::Upper => "upper",
            Function::Substring => "substring",
            Function::IndexOf => "index_of",
            Function::StartsWith => "starts_with",
            Function::EndsWith => "ends_with",
            Function::Contains => "contains",
            Function::TwinChangeIncludes => "twin_change_includes",
        }
    }

    /// The accepted signatures, in words, for error messages.
    pub(crate) fn signature(self) -> &'static str {
        match self {
            Function::Abs
            | Function::Exp
            | Function::Square
            | Function::Ceiling
            | Function::Floor
            | Function::Sign
            | Function::Sqrt => "(number) -> number",
            Function::Power => "(number, number) -> number",
            Function::AsNumber => "(string) -> number or (number) -> number",
            Function::IsBool
            | Function::IsDefined
            | Function::IsNull
            | Function::IsNumber
            | Function::IsString => "(any value) -> bool",
            Function::Concat => "(string, string, ...) -> string, with at least two strings",
            Function::Length => "(string) -> number",
            Function::Lower | Function::Upper => "(string) -> string",
            Function::Substring => "(string, number) or (string, number, number) -> string",
            Function::IndexOf => "(string, string) -> number",
            Function::StartsWith | Function::EndsWith | Function::Contains => {
                "(string, string) -> bool"
            }
            Function::TwinChangeIncludes => {
                "(properties.reported.<path> | properties.desired.<path> | tags.<path>) -> bool"
            }
        }
    }

    /// The result type for these argument types, or `None` when the call does not type-check.
    pub(crate) fn result_type(self, args: &[Type]) -> Option<Type> {
        let all = |expected: Type| args.iter().all(|t| t.unifies_with(expected));
        match self {
            Function::Abs
            | Function::Exp
            | Function::Square
            | Function::Ceiling
            | Function::Floor
            | Function::Sign
            | Function::Sqrt
                if args.len() == 1 && all(Type::Number) =>
            {
                Some(Type::Number)
            }
            Function::Power if args.len() == 2 && all(Type::Number) => Some(Type::Number),
            Function::AsNumber if args.len() == 1 && (all(Type::String) || all(Type::Number)) => {
                Some(Type::Number)
            }
            Function::IsBool
            | Function::IsDefined
            | Function::IsNull
            | Function::IsNumber
            | Function::IsString
                if args.len() == 1 =>
            {
                Some(Type::Bool)
            }
            Function::Concat if args.len() >= 2 && all(Type::String) => Some(Type::String),
            Function::Length if args.len() == 1 && all(Type::String) => Some(Type::Number),
            Function::Lower | Function::Upper if args.len() == 1 && all(Type::String) => {
                Some(Type::String)
            }
            Function::Substring
                if (args.len() == 2 || args.len() == 3)
                    && args[0].unifies_with(Type::String)
                    && args[1..].iter().all(|t| t.unifies_with(Type::Number)) =>
            {
                Some(Type::String)
            }
            Function::IndexOf if args.len() == 2 && all(Type::String) => Some(Type::Number),
            Function::StartsWith | Function::EndsWith | Function::Contains
                if args.len() == 2 && all(Type::String) =>
            {
                Some(Type::Bool)
            }
            _ => None,
        }
    }
}

/// The unary math functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Math {
    Abs,
    Exp,
    Square,
    Ceiling,
    Floor,
    Sign,
    Sqrt,
}

impl Math {
    pub(crate) fn apply(self, v: &Value<'_>) -> Value<'static> {
        let Value::Number(x) = *v else {
            return Value::Undefined;
        };
        Value::number(match self {
            Math::Abs => x.abs(),
            Math::Exp => x.exp(),
            Math::Square => x * x,
            Math::Ceiling => x.ceil(),
            Math::Floor => x.floor(),
            // Math.Sign: 0 for zero (f64::signum would give 1).
            Math::Sign => {
                if x == 0.0 {
                    0.0
                } else {
                    x.signum()
                }
            }
            Math::Sqrt => x.sqrt(),
        })
    }
}

/// `power(x, y)`.
pub(crate) fn power(x: &Value<'_>, y: &Value<'_>) -> Value<'static> {
    match (x, y) {
        (Value::Number(x), Value::Number(y)) => Value::number(x.powf(*y)),
        _ => Value::Undefined,
    }
}

/// `as_number(x)`: a number as is, a string parsed like .NET `double.TryParse(NumberStyles.Any,
/// InvariantCulture)`, anything else undefined.
pub(crate) fn as_number(v: &Value<'_>) -> Value<'static> {
    match v {
        Value::Number(x) => Value::Number(*x),
        Value::Str(s) => parse_number(s).map_or(Value::Undefined, Value::number),
        _ => Value::Undefined,
    }
}

/// Parses a number the way .NET's invariant culture with `NumberStyles.Any` does: surrounding
/// white space, a leading or trailing sign, parentheses for negative, `,` group separators,
/// a decimal point, an exponent, and `Infinity`.
pub(crate) fn parse_number(text: &str) -> Option<f64> {
    // Fast path for plain decimals such as "31.5" or "-2e3", which both parsers read alike.
    let plain = text
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_digit() || b == b'-')
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'));
    if plain && let Ok(x) = text.parse::<f64>() {
        return Some(x);
    }
    let mut s = text.trim();
    let mut negative = false;
    if let Some(inner) = s.strip_prefix('(').and_then(|r| r.strip_suffix(')')) {
        negative = true;
        s = inner.trim();
    }
    if let Some(rest) = s.strip_suffix('-') {
        negative = !negative;
        s = rest.trim_end();
    } else if let Some(rest) = s.strip_suffix('+') {
        s = rest.trim_end();
    }
    if let Some(rest) = s.strip_prefix('-') {
        negative = !negative;
        s = rest;
    } else if let Some(rest) = s.strip_prefix('+') {
        s = rest;
    }
    let magnitude = if s == "Infinity" || s == "∞" {
        f64::INFINITY
    } else {
        let valid = s
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_digit() || b == b'.')
            && s.bytes().all(|b| {
                b.is_ascii_digit() || matches!(b, b'.' | b',' | b'e' | b'E' | b'+' | b'-')
            });
        if !valid {
            return None;
        }
        let cleaned: Cow<'_, str> = if s.contains(',') {
            Cow::Owned(s.replace(',', ""))
        } else {
            Cow::Borrowed(s)
        };
        cleaned.parse::<f64>().ok()?
    };
    Some(if negative { -magnitude } else { magnitude })
}

/// The type tests `is_bool`, `is_defined`, `is_null`, `is_number`, `is_string`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TypeTest {
    Bool,
    Defined,
    Null,
    Number,
    String,
}

impl TypeTest {
    pub(crate) fn apply(self, v: &Value<'_>) -> bool {
        match self {
            TypeTest::Bool => matches!(v, Value::Bool(_)),
            TypeTest::Defined => v.is_defined(),
            TypeTest::Null => matches!(v, Value::Null),
            // is_number(3 / 0) is false: infinities are not numbers here.
            TypeTest::Number => matches!(v, Value::Number(x) if x.is_finite()),
            TypeTest::String => matches!(v, Value::Str(_)),
        }
    }
}

/// A string argument: a string, a null property (empty for `concat`), or anything else.
fn string_arg<'v, 'a>(v: &'v Value<'a>) -> Option<&'v str> {
    match v {
        Value::Str(s) => Some(s),
        _ => None,
    }
}

/// Appends one `concat` argument; false when the result is undefined.
pub(crate) fn concat_push(out: &mut String, v: &Value<'_>) -> bool {
    match v {
        Value::Str(s) => {
            out.push_str(s);
            true
        }
        // A property with a null value concatenates as empty ('a' || null_value || 'd' = 'ad').
        Value::Null => true,
        _ => false,
    }
}

/// `length(s)` in UTF-16 code units.
pub(crate) fn length(v: &Value<'_>) -> Value<'static> {
    string_arg(v).map_or(Value::Undefined, |s| Value::Number(utf16_len(s) as f64))
}

/// `lower(s)` and `upper(s)`: per-character invariant case mapping, as .NET's `ToLowerInvariant`.
pub(crate) fn change_case<'a>(v: Value<'a>, upper: bool) -> Value<'a> {
    let Value::Str(s) = v else {
        return Value::Undefined;
    };
    let mapped: String = if s.is_ascii() {
        if upper {
            s.to_ascii_uppercase()
        } else {
            s.to_ascii_lowercase()
        }
    } else {
        s.chars()
            .map(|c| {
                let mut m: Vec<char> = if upper {
                    c.to_uppercase().collect()
                } else {
                    c.to_lowercase().collect()
                };
                if m.len() == 1 {
                    m.pop().unwrap_or(c)
                } else {
                    c
                }
            })
            .collect()
    };
    Value::Str(Cow::Owned(mapped))
}

/// `substring(s, start[, length])` with the bounds of reference §2.8; out of bounds is undefined.
pub(crate) fn substring<'a>(s: Value<'a>, start: &Value<'_>, len: Option<&Value<'_>>) -> Value<'a> {
    let Value::Str(s) = s else {
        return Value::Undefined;
    };
    let Some(start) = index(start) else {
        return Value::Undefined;
    };
    let total = utf16_len(&s) as i64;
    let (from, to) = match len {
        None if (0..=total).contains(&start) => (start, total),
        Some(len) => match index(len) {
            Some(len) if (0..total).contains(&start) && (0..=total - start).contains(&len) => {
                (start, start + len)
            }
            _ => return Value::Undefined,
        },
        None => return Value::Undefined,
    };
    // Bounds were checked against the length, so these fit in usize.
    let (from, to) = (
        usize::try_from(from).unwrap_or(0),
        usize::try_from(to).unwrap_or(0),
    );
    if s.is_ascii() {
        return match s {
            Cow::Borrowed(b) => Value::Str(Cow::Borrowed(&b[from..to])),
            Cow::Owned(o) => Value::Str(Cow::Owned(o[from..to].to_owned())),
        };
    }
    let units: Vec<u16> = s.encode_utf16().collect();
    Value::Str(Cow::Owned(String::from_utf16_lossy(&units[from..to])))
}

/// A number used as a position: truncated toward zero like a C# `(int)` cast; NaN or out of
/// `i32` range is not a position.
fn index(v: &Value<'_>) -> Option<i64> {
    match v {
        Value::Number(x) if x.is_finite() && x.abs() < 2_147_483_648.0 => Some(x.trunc() as i64),
        _ => None,
    }
}

/// `index_of(s, fragment)` in UTF-16 code units; -1 when absent.
pub(crate) fn index_of(s: &Value<'_>, fragment: &Value<'_>) -> Value<'static> {
    let (Some(s), Some(fragment)) = (string_arg(s), string_arg(fragment)) else {
        return Value::Undefined;
    };
    Value::Number(
        s.find(fragment)
            .map_or(-1.0, |byte| utf16_len(&s[..byte]) as f64),
    )
}

/// The string predicates `starts_with`, `ends_with`, `contains` (ordinal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StringTest {
    StartsWith,
    EndsWith,
    Contains,
}

impl StringTest {
    pub(crate) fn apply(self, s: &Value<'_>, fragment: &Value<'_>) -> Value<'static> {
        let (Some(s), Some(fragment)) = (string_arg(s), string_arg(fragment)) else {
            return Value::Undefined;
        };
        Value::Bool(match self {
            StringTest::StartsWith => s.starts_with(fragment),
            StringTest::EndsWith => s.ends_with(fragment),
            StringTest::Contains => s.contains(fragment),
        })
    }
}

fn utf16_len(s: &str) -> usize {
    if s.is_ascii() {
        s.len()
    } else {
        s.encode_utf16().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Value<'static> {
        Value::Str(Cow::Owned(text.to_owned()))
    }

    #[test]
    fn names_are_case_insensitive() {
        assert_eq!(Function::from_name("AS_NUMBER"), Some(Function::AsNumber));
        assert_eq!(
            Function::from_name("Twin_Change_Includes"),
            Some(Function::TwinChangeIncludes)
        );
        assert_eq!(Function::from_name("nope"), None);
        assert_eq!(names().len(), 24);
    }

    #[test]
    fn numbers_parse_like_dotnet_invariant_any() {
        assert_eq!(parse_number("3"), Some(3.0));
        assert_eq!(parse_number(" 10e10 "), Some(10e10));
        assert_eq!(parse_number("10e1000"), Some(f64::INFINITY));
        assert_eq!(parse_number("1,000.5"), Some(1000.5));
        assert_eq!(parse_number("(5)"), Some(-5.0));
        assert_eq!(parse_number("5-"), Some(-5.0));
        assert_eq!(parse_number("-Infinity"), Some(f64::NEG_INFINITY));
        for bad in ["", "apple", "value1", "inf", "nan", "0x10", "1e", "--1"] {
            assert_eq!(parse_number(bad), None, "{bad}");
        }
    }

    #[test]
    fn sign_of_zero_is_zero_and_of_infinity_is_one() {
        assert_eq!(Math::Sign.apply(&Value::Number(0.0)), Value::Number(0.0));
        assert_eq!(
            Math::Sign.apply(&Value::Number(f64::INFINITY)),
            Value::Number(1.0)
        );
        assert_eq!(Math::Sign.apply(&Value::Number(-2.1)), Value::Number(-1.0));
        assert_eq!(Math::Sqrt.apply(&Value::Number(-4.0)), Value::Undefined);
        assert_eq!(Math::Abs.apply(&s("3")), Value::Undefined);
    }

    #[test]
    fn substring_bounds_follow_the_reference() {
        let sub = |st: f64, len: Option<f64>| {
            substring(
                s("abc"),
                &Value::Number(st),
                len.map(Value::Number).as_ref(),
            )
            .to_static()
        };
        assert_eq!(sub(1.0, None), s("bc"));
        assert_eq!(sub(3.0, None), s(""));
        assert_eq!(sub(4.0, None), Value::Undefined);
        assert_eq!(sub(-1.0, None), Value::Undefined);
        assert_eq!(sub(1.0, Some(1.0)), s("b"));
        assert_eq!(sub(1.0, Some(0.0)), s(""));
        assert_eq!(sub(3.0, Some(0.0)), Value::Undefined);
        assert_eq!(sub(1.0, Some(-2.0)), Value::Undefined);
        assert_eq!(sub(1.0, Some(3.0)), Value::Undefined);
        assert_eq!(
            substring(s("abc"), &Value::Undefined, None),
            Value::Undefined
        );
    }

    #[test]
    fn string_positions_count_utf16_units() {
        assert_eq!(length(&s("😀a")), Value::Number(3.0));
        assert_eq!(index_of(&s("😀a"), &s("a")), Value::Number(2.0));
        assert_eq!(
            substring(s("é😀x"), &Value::Number(3.0), None).to_static(),
            s("x")
        );
        assert_eq!(index_of(&s("abc"), &s("xz")), Value::Number(-1.0));
    }

    #[test]
    fn case_mapping_is_per_character() {
        assert_eq!(change_case(s("Straße"), true).to_static(), s("STRAßE"));
        assert_eq!(change_case(s("HeLLo"), false).to_static(), s("hello"));
        assert_eq!(change_case(Value::Null, true), Value::Undefined);
    }

    #[test]
    fn type_tests_treat_infinity_as_not_a_number() {
        assert!(!TypeTest::Number.apply(&Value::Number(f64::INFINITY)));
        assert!(TypeTest::Number.apply(&Value::Number(1.5)));
        assert!(TypeTest::Defined.apply(&Value::Null));
        assert!(!TypeTest::Defined.apply(&Value::Undefined));
        assert!(TypeTest::Null.apply(&Value::Null));
        assert!(!TypeTest::String.apply(&Value::Null));
    }

    #[test]
    fn concat_treats_null_as_empty_and_undefined_as_fatal() {
        let mut out = String::new();
        assert!(concat_push(&mut out, &s("a")));
        assert!(concat_push(&mut out, &Value::Null));
        assert!(!concat_push(&mut out, &Value::Undefined));
        assert_eq!(out, "a");
    }
}
