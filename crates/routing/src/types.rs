//! Static types of condition expressions (reference §2.6).
//!
//! Type checking is static: an operator or function applied to operand types it does not accept
//! is a compile error, which rejects the route. `$body` queries have the dynamic type, which
//! unifies with every other type at compile time and is checked on the runtime value.

use std::fmt;

/// The static type of an expression.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Type {
    /// Every number (IEEE double): literals, arithmetic, numeric functions.
    Number,
    /// Strings: literals and application and system properties.
    String,
    /// Three-valued booleans: true, false, undefined.
    Bool,
    /// The `null` literal.
    Null,
    /// The `undefined` literal.
    Undefined,
    /// A `$body` query: its type is the JSON value's, known only at run time.
    Dynamic,
}

impl Type {
    /// True when a value of type `self` may stand where `expected` is required.
    pub fn unifies_with(self, expected: Type) -> bool {
        self == expected || self == Type::Dynamic || expected == Type::Dynamic
    }

    /// True for the types `AND`, `OR` and `NOT` accept.
    pub fn is_logical(self) -> bool {
        matches!(
            self,
            Type::Bool | Type::Null | Type::Undefined | Type::Dynamic
        )
    }
}

impl fmt::Display for Type {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Type::Number => "number",
            Type::String => "string",
            Type::Bool => "bool",
            Type::Null => "null",
            Type::Undefined => "undefined",
            Type::Dynamic => "$body value",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_unifies_with_every_type_and_others_only_with_themselves() {
        for t in [
            Type::Number,
            Type::String,
            Type::Bool,
            Type::Null,
            Type::Undefined,
        ] {
            assert!(Type::Dynamic.unifies_with(t));
            assert!(t.unifies_with(Type::Dynamic));
            assert!(t.unifies_with(t));
        }
        assert!(!Type::String.unifies_with(Type::Number));
        assert!(!Type::Null.unifies_with(Type::Number));
    }

    #[test]
    fn logical_operators_accept_bool_null_undefined_and_dynamic() {
        assert!(Type::Bool.is_logical());
        assert!(Type::Null.is_logical());
        assert!(Type::Undefined.is_logical());
        assert!(Type::Dynamic.is_logical());
        assert!(!Type::String.is_logical());
        assert!(!Type::Number.is_logical());
    }
}
