//! The parsed form of a query or condition.

use serde_json::Value;

/// A dotted path into a twin, e.g. `properties.reported.z` or `configurations.[[dep1]].status`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The segments, `[[ ]]` quoting removed.
    pub segments: Vec<String>,
}

impl Path {
    /// The segments joined with dots, for messages and projection names.
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `!=` or `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A value in a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    /// A twin path.
    Path(Path),
    /// A literal (string, number, bool, null).
    Literal(Value),
}

/// A boolean condition.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// Matches everything (`*` as a target condition, or no WHERE).
    True,
    /// Both hold.
    And(Box<Expr>, Box<Expr>),
    /// Either holds.
    Or(Box<Expr>, Box<Expr>),
    /// Negation.
    Not(Box<Expr>),
    /// `a <op> b`.
    Compare(CmpOp, Operand, Operand),
    /// `a IN [..]`, or `NIN` when `negated`.
    In {
        /// Tested value.
        operand: Operand,
        /// Candidates.
        list: Vec<Value>,
        /// `NIN`.
        negated: bool,
    },
    /// `is_defined(path)`.
    IsDefined(Path),
}

/// One projected column.
#[derive(Debug, Clone, PartialEq)]
pub enum SelectItem {
    /// A path, with an optional alias.
    Path(Path, Option<String>),
    /// `COUNT()`, with an optional alias.
    Count(Option<String>),
}

/// What a query returns.
#[derive(Debug, Clone, PartialEq)]
pub enum Select {
    /// `SELECT *`: whole twins.
    All,
    /// Projected columns.
    Items(Vec<SelectItem>),
}

/// The collection queried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `devices`: device twins.
    Devices,
    /// `devices.modules`: module twins.
    Modules,
}

/// A whole `SELECT … FROM … [WHERE …] [GROUP BY …]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Projection.
    pub select: Select,
    /// Collection.
    pub from: Source,
    /// Filter.
    pub filter: Expr,
    /// Grouping paths (with `COUNT()`).
    pub group_by: Vec<Path>,
}
