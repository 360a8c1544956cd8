//! The IoT Hub query language subset: `SELECT * | paths | COUNT() FROM devices | devices.modules
//! [WHERE …] [GROUP BY …]`, and the same conditions as configuration target conditions.
//!
//! See `reference/iot-hub-protocols.md` §3.3 "Query". Errors carry the character position.

mod ast;
mod eval;
mod lexer;
mod parser;

pub use ast::{CmpOp, Expr, Operand, Path, Query, Select, SelectItem, Source};
pub use eval::{ItemType, execute, lookup, matches};
pub use parser::{parse_condition, parse_query};

/// A syntax error with its position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("syntax error at position {position}: expected {expected}, found {found}")]
pub struct QueryError {
    /// 0-based character offset.
    pub position: usize,
    /// What the parser wanted.
    pub expected: String,
    /// What it saw.
    pub found: String,
}

impl QueryError {
    fn new(position: usize, expected: &str, found: &str) -> Self {
        Self {
            position,
            expected: expected.to_owned(),
            found: found.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests;
