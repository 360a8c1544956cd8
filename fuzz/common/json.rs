//! Structure-aware JSON for fuzz targets: values drawn from the fuzzer's bytes, with object keys
//! and strings taken from a target-specific dictionary most of the time, so that generated
//! documents reach the fields a parser knows instead of dying at the first unknown key.
//! Numbers favour the edges (0, ±1, i64/u64 limits, 2^52, big floats) where limits live.

// Each target includes this file and uses only part of it.
#![allow(dead_code)]

use arbitrary::{Result, Unstructured};
use serde_json::{Map, Number, Value};

/// Numbers at the edges of the limits the parsers check.
const EDGE_INTEGERS: &[i64] = &[
    0,
    1,
    -1,
    2,
    80,
    1023,
    1024,
    4096,
    65_535,
    65_536,
    1_000_000,
    1_000_000_000,
    i32::MAX as i64,
    i32::MIN as i64,
    4_503_599_627_370_495,
    4_503_599_627_370_496,
    -4_503_599_627_370_496,
    i64::MAX,
    i64::MIN,
    i64::MAX / 1000 + 1,
];

/// A JSON generator with a dictionary of keys and string values.
pub struct JsonGen<'d> {
    /// Object keys the target's parser knows.
    pub keys: &'d [&'d str],
    /// String values the target's parser gives a meaning to.
    pub strings: &'d [&'d str],
    /// How deep objects and arrays may nest.
    pub max_depth: u32,
}

impl JsonGen<'_> {
    /// Any JSON value.
    pub fn value(&self, u: &mut Unstructured<'_>) -> Result<Value> {
        self.value_at(u, self.max_depth)
    }

    /// A JSON object.
    pub fn object(&self, u: &mut Unstructured<'_>) -> Result<Map<String, Value>> {
        self.object_at(u, self.max_depth)
    }

    fn value_at(&self, u: &mut Unstructured<'_>, depth: u32) -> Result<Value> {
        let kinds = if depth == 0 { 5 } else { 7 };
        Ok(match u.int_in_range(0..=kinds - 1)? {
            0 => Value::Null,
            1 => Value::Bool(u.arbitrary()?),
            2 => self.number(u)?,
            3 | 4 => Value::String(self.string(u)?),
            5 => {
                let n = u.int_in_range(0..=4)?;
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value_at(u, depth - 1)?);
                }
                Value::Array(items)
            }
            _ => Value::Object(self.object_at(u, depth - 1)?),
        })
    }

    fn object_at(&self, u: &mut Unstructured<'_>, depth: u32) -> Result<Map<String, Value>> {
        let n = u.int_in_range(0..=6)?;
        let mut map = Map::new();
        for _ in 0..n {
            let key = self.key(u)?;
            let value = self.value_at(u, depth)?;
            map.insert(key, value);
        }
        Ok(map)
    }

    /// A key: usually from the dictionary (sometimes in another case), else arbitrary text.
    pub fn key(&self, u: &mut Unstructured<'_>) -> Result<String> {
        pick_or_arbitrary(u, self.keys)
    }

    /// A string: usually from the dictionary, else arbitrary text.
    pub fn string(&self, u: &mut Unstructured<'_>) -> Result<String> {
        pick_or_arbitrary(u, self.strings)
    }

    /// A number, often at an edge.
    pub fn number(&self, u: &mut Unstructured<'_>) -> Result<Value> {
        Ok(match u.int_in_range(0..=3)? {
            0 => Value::from(*u.choose(EDGE_INTEGERS)?),
            1 => Value::from(u.arbitrary::<i64>()?),
            2 => Value::from(u.arbitrary::<u64>()?),
            _ => Number::from_f64(u.arbitrary::<f64>()?).map_or(Value::Null, Value::Number),
        })
    }
}

/// A dictionary word (sometimes with its case changed), or arbitrary text.
pub fn pick_or_arbitrary(u: &mut Unstructured<'_>, words: &[&str]) -> Result<String> {
    if words.is_empty() || u.ratio(1, 4)? {
        return u.arbitrary();
    }
    let word = *u.choose(words)?;
    Ok(match u.int_in_range(0..=7)? {
        0 => word.to_ascii_lowercase(),
        1 => word.to_ascii_uppercase(),
        _ => word.to_owned(),
    })
}
