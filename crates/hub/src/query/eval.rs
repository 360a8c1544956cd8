//! Evaluates conditions and queries against twin documents (the REST view of a twin).
//!
//! Comparisons apply to primitives only; anything involving an undefined path or values of
//! different types is false (IoT Hub's "undefined" drops the row). Statuses under
//! `configurations` compare case-insensitively, since real hubs and docs disagree on the casing.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::ast::{CmpOp, Expr, Operand, Path, Query, Select, SelectItem};

/// True when `doc` satisfies `expr`.
pub fn matches(expr: &Expr, doc: &Value) -> bool {
    match expr {
        Expr::True => true,
        Expr::And(a, b) => matches(a, doc) && matches(b, doc),
        Expr::Or(a, b) => matches(a, doc) || matches(b, doc),
        Expr::Not(e) => !matches(e, doc),
        Expr::IsDefined(p) => lookup(doc, p).is_some(),
        Expr::Compare(op, a, b) => {
            let fold = is_configuration(a) || is_configuration(b);
            match (resolve(doc, a), resolve(doc, b)) {
                (Some(x), Some(y)) => compare(*op, x, y, fold),
                _ => false,
            }
        }
        Expr::In {
            operand,
            list,
            negated,
        } => match resolve(doc, operand) {
            Some(v) => {
                let fold = is_configuration(operand);
                list.iter().any(|item| compare(CmpOp::Eq, v, item, fold)) != *negated
            }
            None => false,
        },
    }
}

fn is_configuration(o: &Operand) -> bool {
    matches!(o, Operand::Path(p) if p.segments.first().is_some_and(|s| s == "configurations"))
}

fn resolve<'a>(doc: &'a Value, operand: &'a Operand) -> Option<&'a Value> {
    match operand {
        Operand::Path(p) => lookup(doc, p),
        Operand::Literal(v) => Some(v),
    }
}

/// The value at `path`, if defined.
pub fn lookup<'a>(doc: &'a Value, path: &Path) -> Option<&'a Value> {
    path.segments
        .iter()
        .try_fold(doc, |v, seg| v.get(seg.as_str()))
}

fn compare(op: CmpOp, a: &Value, b: &Value, fold_case: bool) -> bool {
    let ord = match (a, b) {
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .zip(y.as_f64())
            .and_then(|(x, y)| x.partial_cmp(&y)),
        (Value::String(x), Value::String(y)) if fold_case => {
            Some(x.to_lowercase().cmp(&y.to_lowercase()))
        }
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    };
    let Some(ord) = ord else { return false };
    match op {
        CmpOp::Eq => ord == Ordering::Equal,
        CmpOp::Ne => ord != Ordering::Equal,
        CmpOp::Lt => ord == Ordering::Less,
        CmpOp::Le => ord != Ordering::Greater,
        CmpOp::Gt => ord == Ordering::Greater,
        CmpOp::Ge => ord != Ordering::Less,
    }
}

/// What kind of items a query returns (`x-ms-item-type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemType {
    /// Whole twins (`SELECT *`).
    Twin,
    /// Projections and aggregates.
    Raw,
}

impl ItemType {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Twin => "twin",
            Self::Raw => "raw",
        }
    }
}

/// Runs `query` over `docs` (already restricted to the query's source).
pub fn execute<'a>(
    query: &Query,
    docs: impl IntoIterator<Item = &'a Value>,
) -> (Vec<Value>, ItemType) {
    let hits = docs.into_iter().filter(|d| matches(&query.filter, d));
    match &query.select {
        Select::All => (hits.cloned().collect(), ItemType::Twin),
        Select::Items(items) if items.iter().any(|i| matches!(i, SelectItem::Count(_))) => {
            (aggregate(items, &query.group_by, hits), ItemType::Raw)
        }
        Select::Items(items) => (hits.map(|d| project(items, d)).collect(), ItemType::Raw),
    }
}

fn column_name(path: &Path, alias: Option<&String>) -> String {
    alias
        .cloned()
        .unwrap_or_else(|| path.segments.last().cloned().unwrap_or_default())
}

fn project(items: &[SelectItem], doc: &Value) -> Value {
    let mut row = Map::new();
    for item in items {
        if let SelectItem::Path(p, alias) = item
            && let Some(v) = lookup(doc, p)
        {
            row.insert(column_name(p, alias.as_ref()), v.clone());
        }
    }
    Value::Object(row)
}

fn aggregate<'a>(
    items: &[SelectItem],
    group_by: &[Path],
    docs: impl Iterator<Item = &'a Value>,
) -> Vec<Value> {
    let mut groups: Vec<(Vec<Option<Value>>, u64)> = Vec::new();
    for d in docs {
        let key: Vec<Option<Value>> = group_by.iter().map(|p| lookup(d, p).cloned()).collect();
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => groups.push((key, 1)),
        }
    }
    if groups.is_empty() && group_by.is_empty() {
        groups.push((Vec::new(), 0));
    }
    groups
        .into_iter()
        .map(|(key, n)| {
            let mut row = Map::new();
            for item in items {
                match item {
                    SelectItem::Count(alias) => {
                        row.insert(alias.clone().unwrap_or_else(|| "$1".into()), Value::from(n));
                    }
                    SelectItem::Path(p, alias) => {
                        if let Some(i) = group_by.iter().position(|g| g == p)
                            && let Some(Some(v)) = key.get(i)
                        {
                            row.insert(column_name(p, alias.as_ref()), v.clone());
                        }
                    }
                }
            }
            Value::Object(row)
        })
        .collect()
}
