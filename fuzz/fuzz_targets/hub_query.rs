//! The cloud hub's query language (`ironedge_hub::query`): `parse_query` (`POST /devices/query`,
//! configuration metrics) and `parse_condition` (configuration `targetCondition`) on any text,
//! and `execute`/`matches` on twin documents.
//!
//! Input: the query text, a NUL byte, then bytes that build the twins it runs over (their keys
//! are the words of the query, so paths find values).
//!
//! Checks:
//! - nothing panics or overflows the stack;
//! - an error's position is inside the text (in characters) and its message names what was
//!   expected and what was found;
//! - a query's rows: `SELECT *` returns exactly the matching twins, projections one row per
//!   match, `COUNT()` adds up to the number of matches (one row without `GROUP BY`, one row per
//!   distinct key with it);
//! - a condition matches the same twins as `SELECT * FROM devices WHERE <condition>`, and
//!   `NOT (<condition>)` matches exactly the others.
#![no_main]

#[path = "../common/json.rs"]
mod json;

use arbitrary::{Result, Unstructured};
use ironedge_hub::query::{
    Expr, ItemType, Query, QueryError, Select, SelectItem, Source, execute, matches,
    parse_condition, parse_query,
};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

const TWIN_KEYS: &[&str] = &[
    "deviceId",
    "moduleId",
    "properties",
    "reported",
    "desired",
    "tags",
    "capabilities",
    "iotEdge",
    "configurations",
    "status",
    "$version",
    "lastDesiredVersion",
];

fuzz_target!(|data: &[u8]| {
    let (text, rest) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = String::from_utf8_lossy(text);
    let docs = twins(&text, &mut Unstructured::new(rest)).unwrap_or_default();
    match parse_query(&text) {
        Ok(query) => check_query(&query, &docs),
        Err(e) => check_error(&text, &e),
    }
    match parse_condition(&text) {
        Ok(condition) => check_condition(condition, &docs),
        Err(e) => check_error(&text, &e),
    }
});

fn check_error(text: &str, e: &QueryError) {
    assert!(
        e.position <= text.chars().count(),
        "{e:?} is past the end of {text:?}"
    );
    assert!(!e.expected.is_empty() && !e.found.is_empty(), "{e:?}");
    assert!(e.to_string().contains(&e.expected));
}

fn check_query(query: &Query, docs: &[Value]) {
    let hits = docs.iter().filter(|d| matches(&query.filter, d)).count();
    let (rows, item_type) = execute(query, docs);
    match &query.select {
        Select::All => {
            assert_eq!(item_type, ItemType::Twin);
            let expected: Vec<&Value> = docs.iter().filter(|d| matches(&query.filter, d)).collect();
            assert_eq!(rows.iter().collect::<Vec<_>>(), expected);
        }
        Select::Items(items) => {
            assert_eq!(item_type, ItemType::Raw);
            let count_column = items.iter().find_map(|i| match i {
                SelectItem::Count(alias) => Some(alias.clone().unwrap_or_else(|| "$1".into())),
                SelectItem::Path(..) => None,
            });
            match count_column {
                None => assert_eq!(rows.len(), hits),
                Some(column) => {
                    if query.group_by.is_empty() {
                        assert_eq!(rows.len(), 1, "an aggregate without GROUP BY is one row");
                    }
                    // A path column of the same name would overwrite the count.
                    let shadowed = items.iter().any(|i| match i {
                        SelectItem::Path(p, alias) => {
                            alias.as_ref().or(p.segments.last()) == Some(&column)
                        }
                        SelectItem::Count(_) => false,
                    });
                    if !shadowed {
                        let counted: u64 = rows.iter().filter_map(|r| r[&column].as_u64()).sum();
                        assert_eq!(counted, hits as u64, "COUNT() rows do not add up");
                    }
                }
            }
            for row in &rows {
                assert!(row.is_object());
            }
        }
    }
}

fn check_condition(condition: Expr, docs: &[Value]) {
    let query = Query {
        select: Select::All,
        from: Source::Devices,
        filter: condition.clone(),
        group_by: Vec::new(),
    };
    let (rows, _) = execute(&query, docs);
    let matched: Vec<&Value> = docs.iter().filter(|d| matches(&condition, d)).collect();
    assert_eq!(rows.iter().collect::<Vec<_>>(), matched);
    let negated = Expr::Not(Box::new(condition.clone()));
    for d in docs {
        assert_ne!(matches(&condition, d), matches(&negated, d));
    }
}

/// Twins whose keys come from the query's words and the twin's own fields.
fn twins(text: &str, u: &mut Unstructured<'_>) -> Result<Vec<Value>> {
    let mut words: Vec<&str> = text
        .split(|c: char| !(c.is_alphanumeric() || matches!(c, '_' | '$' | '-')))
        .filter(|w| !w.is_empty() && w.len() <= 32)
        .collect();
    words.extend_from_slice(TWIN_KEYS);
    words.sort_unstable();
    words.dedup();
    let generator = json::JsonGen {
        keys: &words,
        strings: &words,
        max_depth: 4,
    };
    let mut docs = Vec::new();
    for _ in 0..u.int_in_range(0..=6)? {
        docs.push(Value::Object(generator.object(u)?));
    }
    Ok(docs)
}
