//! Runtime values of condition expressions and the three-valued truth of a condition.

use std::borrow::Cow;
use std::fmt;

/// The result of evaluating a condition: Kleene three-valued logic (reference §2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Truth {
    /// The condition holds: the route is taken.
    True,
    /// The condition does not hold.
    False,
    /// The condition could not be decided (a missing property, a type mismatch at run time, …):
    /// the route is not taken.
    Undefined,
}

impl Truth {
    /// True only for [`Truth::True`].
    pub fn is_true(self) -> bool {
        self == Truth::True
    }

    /// `"true"`, `"false"` or `"undefined"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Truth::True => "true",
            Truth::False => "false",
            Truth::Undefined => "undefined",
        }
    }
}

impl From<bool> for Truth {
    fn from(b: bool) -> Self {
        if b { Truth::True } else { Truth::False }
    }
}

impl fmt::Display for Truth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A runtime value. Strings borrow from the compiled route, the message or its parsed body.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// No value (a missing property, NaN, a failed conversion, …).
    Undefined,
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number; never NaN (NaN is [`Value::Undefined`]).
    Number(f64),
    /// A string.
    Str(Cow<'a, str>),
}

impl<'a> Value<'a> {
    /// A number, with NaN mapped to undefined (`3 % 0` is undefined, reference §2.6).
    pub(crate) fn number(x: f64) -> Self {
        if x.is_nan() {
            Value::Undefined
        } else {
            Value::Number(x)
        }
    }

    /// True unless undefined.
    pub(crate) fn is_defined(&self) -> bool {
        !matches!(self, Value::Undefined)
    }

    /// A copy that owns its string, for tests.
    #[cfg(test)]
    pub(crate) fn to_static(&self) -> Value<'static> {
        match self {
            Value::Undefined => Value::Undefined,
            Value::Null => Value::Null,
            Value::Bool(b) => Value::Bool(*b),
            Value::Number(x) => Value::Number(*x),
            Value::Str(s) => Value::Str(Cow::Owned(s.to_string())),
        }
    }

    /// The three-valued boolean this value stands for in `AND`, `OR` and `NOT`.
    pub(crate) fn truth(&self) -> Truth {
        match self {
            Value::Bool(b) => Truth::from(*b),
            _ => Truth::Undefined,
        }
    }
}

impl From<Truth> for Value<'_> {
    fn from(t: Truth) -> Self {
        match t {
            Truth::True => Value::Bool(true),
            Truth::False => Value::Bool(false),
            Truth::Undefined => Value::Undefined,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_undefined() {
        assert_eq!(Value::number(f64::NAN), Value::Undefined);
        assert_eq!(Value::number(f64::INFINITY), Value::Number(f64::INFINITY));
    }

    #[test]
    fn only_booleans_have_a_definite_truth() {
        assert_eq!(Value::Bool(true).truth(), Truth::True);
        assert_eq!(Value::Bool(false).truth(), Truth::False);
        assert_eq!(Value::Null.truth(), Truth::Undefined);
        assert_eq!(Value::Number(1.0).truth(), Truth::Undefined);
        assert_eq!(Value::Str("true".into()).truth(), Truth::Undefined);
    }

    #[test]
    fn truth_prints_lowercase() {
        assert_eq!(Truth::Undefined.to_string(), "undefined");
        assert_eq!(Truth::from(true).as_str(), "true");
    }
}
