//! Evaluation of compiled conditions on a message (reference §2.6, §2.9).
//!
//! The compiler leaves a compact tree of [`Node`]s whose types are already checked; evaluating
//! it borrows strings from the route, the message and the parsed body and allocates only for
//! functions that build new strings (`concat`, `lower`, `upper`, non-ASCII `substring`).

use std::borrow::Cow;
use std::cmp::Ordering;

use crate::body::{BodyCache, BodyPath};
use crate::functions::{self, Math, StringTest, TypeTest};
use crate::message::{PropertyValue, RoutableMessage, SystemProperty};
use crate::value::{Truth, Value};

/// A system property reference resolved at compile time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SystemKey {
    /// A property the edge hub may set.
    Known(SystemProperty<'static>),
    /// Any other name; looked up as is.
    Other(Box<str>),
    /// A name the edge never sets (`correlationId`, `componentName`, …): always undefined.
    Never,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A compiled, type-checked expression.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Const(Value<'static>),
    AppProperty(Box<str>),
    System(SystemKey),
    /// `$name`: the application property `$name` if present, else the system property.
    AppOrSystem(Box<str>, SystemKey),
    /// `$body.path`: the application property `$body.path` if present, else the body query.
    AppOrBody(Box<str>, BodyPath),
    Body(BodyPath),
    Negate(Box<Node>),
    Not(Box<Node>),
    Arith(Arith, Box<Node>, Box<Node>),
    Concat(Box<[Node]>),
    /// `dynamic`: `$body` comparison rules (a type mismatch is "not equal", not undefined).
    Compare {
        op: Compare,
        lhs: Box<Node>,
        rhs: Box<Node>,
        dynamic: bool,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Coalesce(Box<Node>, Box<Node>),
    Math(Math, Box<Node>),
    Power(Box<Node>, Box<Node>),
    AsNumber(Box<Node>),
    TypeTest(TypeTest, Box<Node>),
    Length(Box<Node>),
    ChangeCase {
        upper: bool,
        arg: Box<Node>,
    },
    Substring(Box<Node>, Box<Node>, Option<Box<Node>>),
    IndexOf(Box<Node>, Box<Node>),
    StringTest(StringTest, Box<Node>, Box<Node>),
    TwinChangeIncludes(BodyPath),
}

/// How the value of the whole condition becomes a [`Truth`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Booleans as they are, anything else undefined.
    Truth,
    /// A condition of static type null is false.
    False,
    /// A condition that is a number, string or undefined is never true.
    Undefined,
}

/// One message being routed: the message and its lazily parsed body, shared by every route
/// evaluated on it so that the body is parsed at most once.
#[derive(Debug)]
pub struct MessageContext<'m, M: RoutableMessage + ?Sized> {
    message: &'m M,
    body: BodyCache<'m>,
}

impl<'m, M: RoutableMessage + ?Sized> MessageContext<'m, M> {
    /// Starts routing `message`.
    pub fn new(message: &'m M) -> Self {
        Self {
            message,
            body: BodyCache::default(),
        }
    }

    /// The message.
    pub fn message(&self) -> &'m M {
        self.message
    }

    fn system(&self, key: &SystemKey) -> Option<&'m str> {
        match key {
            SystemKey::Known(p) => self.message.system_property(*p),
            SystemKey::Other(name) => self.message.system_property(SystemProperty::Other(name)),
            SystemKey::Never => None,
        }
    }

    fn application(&self, name: &str) -> PropertyValue<'m> {
        self.message.application_property(name)
    }
}

/// Evaluates a whole condition.
pub(crate) fn evaluate<M: RoutableMessage + ?Sized>(
    root: &Node,
    outcome: Outcome,
    ctx: &MessageContext<'_, M>,
) -> Truth {
    match outcome {
        Outcome::Truth => eval(root, ctx).truth(),
        Outcome::False => Truth::False,
        Outcome::Undefined => Truth::Undefined,
    }
}

fn property(value: PropertyValue<'_>) -> Value<'_> {
    match value {
        PropertyValue::Missing => Value::Undefined,
        PropertyValue::Null => Value::Null,
        PropertyValue::Value(s) => Value::Str(Cow::Borrowed(s)),
    }
}

fn borrow<'a>(v: &'a Value<'static>) -> Value<'a> {
    match v {
        Value::Str(s) => Value::Str(Cow::Borrowed(s)),
        Value::Undefined => Value::Undefined,
        Value::Null => Value::Null,
        Value::Bool(b) => Value::Bool(*b),
        Value::Number(x) => Value::Number(*x),
    }
}

/// Evaluates an expression. `'a` covers the compiled tree, the message and its body cache.
pub(crate) fn eval<'a, M: RoutableMessage + ?Sized>(
    node: &'a Node,
    ctx: &'a MessageContext<'_, M>,
) -> Value<'a> {
    match node {
        Node::Const(v) => borrow(v),
        Node::AppProperty(name) => property(ctx.application(name)),
        Node::System(key) => ctx
            .system(key)
            .map_or(Value::Undefined, |s| Value::Str(Cow::Borrowed(s))),
        Node::AppOrSystem(app, key) => match ctx.application(app) {
            PropertyValue::Missing => ctx
                .system(key)
                .map_or(Value::Undefined, |s| Value::Str(Cow::Borrowed(s))),
            found => property(found),
        },
        Node::AppOrBody(app, path) => match ctx.application(app) {
            PropertyValue::Missing => body(path, ctx),
            found => property(found),
        },
        Node::Body(path) => body(path, ctx),
        Node::Negate(x) => negate(&eval(x, ctx)),
        Node::Not(x) => match eval(x, ctx).truth() {
            Truth::True => Value::Bool(false),
            Truth::False => Value::Bool(true),
            Truth::Undefined => Value::Undefined,
        },
        Node::Arith(op, l, r) => arith(*op, &eval(l, ctx), &eval(r, ctx)),
        Node::Concat(parts) => concat(parts, ctx),
        Node::Compare {
            op,
            lhs,
            rhs,
            dynamic,
        } => compare(*op, &eval(lhs, ctx), &eval(rhs, ctx), *dynamic),
        Node::And(l, r) => match eval(l, ctx).truth() {
            // Kleene: false AND anything is false, without evaluating the right side.
            Truth::False => Value::Bool(false),
            Truth::True => eval(r, ctx).truth().into(),
            Truth::Undefined => match eval(r, ctx).truth() {
                Truth::False => Value::Bool(false),
                _ => Value::Undefined,
            },
        },
        Node::Or(l, r) => match eval(l, ctx).truth() {
            Truth::True => Value::Bool(true),
            Truth::False => eval(r, ctx).truth().into(),
            Truth::Undefined => match eval(r, ctx).truth() {
                Truth::True => Value::Bool(true),
                _ => Value::Undefined,
            },
        },
        Node::Coalesce(l, r) => {
            let left = eval(l, ctx);
            if left.is_defined() {
                left
            } else {
                eval(r, ctx)
            }
        }
        Node::Math(f, x) => f.apply(&eval(x, ctx)),
        Node::Power(x, y) => functions::power(&eval(x, ctx), &eval(y, ctx)),
        Node::AsNumber(x) => functions::as_number(&eval(x, ctx)),
        Node::TypeTest(t, x) => Value::Bool(t.apply(&eval(x, ctx))),
        Node::Length(x) => functions::length(&eval(x, ctx)),
        Node::ChangeCase { upper, arg } => functions::change_case(eval(arg, ctx), *upper),
        Node::Substring(s, start, len) => {
            let len = len.as_ref().map(|l| eval(l, ctx));
            functions::substring(eval(s, ctx), &eval(start, ctx), len.as_ref())
        }
        Node::IndexOf(s, f) => functions::index_of(&eval(s, ctx), &eval(f, ctx)),
        Node::StringTest(t, s, f) => t.apply(&eval(s, ctx), &eval(f, ctx)),
        Node::TwinChangeIncludes(path) => match ctx.body.get(ctx.message) {
            Some(json) => Value::Bool(path.is_present(json)),
            None => Value::Undefined,
        },
    }
}

fn body<'a, M: RoutableMessage + ?Sized>(
    path: &BodyPath,
    ctx: &'a MessageContext<'_, M>,
) -> Value<'a> {
    match ctx.body.get(ctx.message) {
        Some(json) => path.lookup(json),
        None => Value::Undefined,
    }
}

fn negate(v: &Value<'_>) -> Value<'static> {
    match v {
        Value::Number(x) => Value::Number(-x),
        // Null.cs: -null = 0 (only reachable through a `$body` null).
        Value::Null => Value::Number(0.0),
        _ => Value::Undefined,
    }
}

fn arith(op: Arith, l: &Value<'_>, r: &Value<'_>) -> Value<'static> {
    let (x, y) = match (l, r) {
        (Value::Number(x), Value::Number(y)) => (*x, *y),
        // `$body` nulls follow Null.cs; the compiler never lets a static null get here.
        (Value::Null, Value::Number(y)) => return null_arith(op, None, Some(*y)),
        (Value::Number(x), Value::Null) => return null_arith(op, Some(*x), None),
        (Value::Null, Value::Null) => return null_arith(op, None, None),
        _ => return Value::Undefined,
    };
    Value::number(match op {
        Arith::Add => x + y,
        Arith::Sub => x - y,
        Arith::Mul => x * y,
        Arith::Div => x / y,
        Arith::Mod => x % y,
    })
}

/// Arithmetic with null from `Null.cs` (`None` is the null operand).
fn null_arith(op: Arith, x: Option<f64>, y: Option<f64>) -> Value<'static> {
    Value::number(match (op, x, y) {
        (Arith::Add, Some(v), None) | (Arith::Add, None, Some(v)) | (Arith::Sub, Some(v), None) => {
            v
        }
        (Arith::Sub, None, Some(v)) => -v,
        (Arith::Add | Arith::Sub | Arith::Mul, _, _) => 0.0,
        (Arith::Div, None, Some(_)) | (Arith::Mod, None, Some(_)) => 0.0,
        (Arith::Div, Some(v), None) => {
            if v >= 0.0 {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            }
        }
        (Arith::Div | Arith::Mod, _, _) => f64::NAN,
    })
}

fn concat<'a, M: RoutableMessage + ?Sized>(
    parts: &'a [Node],
    ctx: &'a MessageContext<'_, M>,
) -> Value<'a> {
    let mut out = String::new();
    for part in parts {
        if !functions::concat_push(&mut out, &eval(part, ctx)) {
            return Value::Undefined;
        }
    }
    Value::Str(Cow::Owned(out))
}

/// Comparisons (reference §2.6, `ComparisonOperators.cs`, `Null.cs`).
fn compare(op: Compare, l: &Value<'_>, r: &Value<'_>, dynamic: bool) -> Value<'static> {
    if matches!(op, Compare::Eq | Compare::Ne) {
        // Equality without ordering: strings of different lengths differ at once.
        let equal = match (l, r) {
            (Value::Undefined, _) | (_, Value::Undefined) => return Value::Undefined,
            (Value::Number(x), Value::Number(y)) => x == y,
            (Value::Str(x), Value::Str(y)) => x == y,
            (Value::Bool(x), Value::Bool(y)) => x == y,
            (Value::Null, Value::Null) => true,
            // Values of different types: for `$body` values "not equal"; otherwise (a null
            // property against a string) undefined, as `Null.cs` defines.
            _ if dynamic => false,
            _ => return Value::Undefined,
        };
        return Value::Bool(equal == (op == Compare::Eq));
    }
    let ordering = match (l, r) {
        (Value::Number(x), Value::Number(y)) => x.partial_cmp(y),
        (Value::Str(x), Value::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        // null < null is false and null <= null is true (Null.cs), as for equal values.
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(ordering) = ordering else {
        return Value::Undefined;
    };
    Value::Bool(match op {
        Compare::Lt => ordering == Ordering::Less,
        Compare::Le => ordering != Ordering::Greater,
        Compare::Gt => ordering == Ordering::Greater,
        _ => ordering != Ordering::Less,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_arithmetic_follows_null_cs() {
        let n = Value::Null;
        let x = Value::Number(5.0);
        assert_eq!(arith(Arith::Add, &x, &n), Value::Number(5.0));
        assert_eq!(arith(Arith::Sub, &n, &x), Value::Number(-5.0));
        assert_eq!(arith(Arith::Mul, &n, &x), Value::Number(0.0));
        assert_eq!(arith(Arith::Div, &x, &n), Value::Number(f64::INFINITY));
        assert_eq!(
            arith(Arith::Div, &Value::Number(-1.0), &n),
            Value::Number(f64::NEG_INFINITY)
        );
        assert_eq!(arith(Arith::Div, &n, &x), Value::Number(0.0));
        assert_eq!(arith(Arith::Div, &n, &n), Value::Undefined);
        assert_eq!(arith(Arith::Mod, &x, &n), Value::Undefined);
        assert_eq!(negate(&n), Value::Number(0.0));
    }

    #[test]
    fn comparing_different_types_depends_on_whether_a_body_value_is_involved() {
        let s = Value::Str("50".into());
        let x = Value::Number(50.0);
        assert_eq!(compare(Compare::Eq, &x, &s, true), Value::Bool(false));
        assert_eq!(compare(Compare::Ne, &x, &s, true), Value::Bool(true));
        assert_eq!(compare(Compare::Lt, &x, &s, true), Value::Undefined);
        assert_eq!(
            compare(Compare::Eq, &Value::Null, &s, false),
            Value::Undefined
        );
        assert_eq!(
            compare(Compare::Eq, &Value::Undefined, &Value::Undefined, true),
            Value::Undefined
        );
    }

    #[test]
    fn null_compares_equal_to_null() {
        let n = Value::Null;
        assert_eq!(compare(Compare::Eq, &n, &n, false), Value::Bool(true));
        assert_eq!(compare(Compare::Lt, &n, &n, false), Value::Bool(false));
        assert_eq!(compare(Compare::Le, &n, &n, false), Value::Bool(true));
    }

    #[test]
    fn strings_compare_ordinally() {
        let a = Value::Str("a".into());
        let upper = Value::Str("B".into());
        assert_eq!(compare(Compare::Lt, &upper, &a, false), Value::Bool(true));
    }
}
