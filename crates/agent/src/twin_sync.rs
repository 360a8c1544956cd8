//! Desired-properties bookkeeping for one twin, as IoT Edge's `EdgeAgentConnection` does it
//! (`reference/iotedge-runtime.md` §4.1): a full twin at start and after every reconnect, then
//! patches applied only when `patch.$version == current + 1`; anything else re-pulls the twin.
//! Pure: the caller does the GETs.

use serde_json::{Map, Value};

/// What a desired patch means for the local copy.
#[derive(Debug, Clone, PartialEq)]
pub enum PatchOutcome {
    /// Applied; the desired properties changed to this version.
    Applied(i64),
    /// Already seen (an old or duplicate notification); ignore it.
    Stale,
    /// A version was missed (or none is known yet): fetch the full twin.
    Refetch,
}

/// The desired properties of one twin as far as the agent knows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TwinSync {
    desired: Option<Map<String, Value>>,
}

/// The `$version` of a desired document or patch.
pub fn version_of(doc: &Map<String, Value>) -> Option<i64> {
    doc.get("$version").and_then(Value::as_i64)
}

impl TwinSync {
    /// The current desired properties (with `$version`), if a full twin was read.
    pub fn desired(&self) -> Option<&Map<String, Value>> {
        self.desired.as_ref()
    }

    /// The current desired `$version`.
    pub fn version(&self) -> Option<i64> {
        self.desired.as_ref().and_then(version_of)
    }

    /// Takes the desired section of a full twin; returns true when it differs from what was known.
    pub fn on_full(&mut self, desired: Map<String, Value>) -> bool {
        let desired = strip_metadata(desired);
        let changed = self.desired.as_ref() != Some(&desired);
        self.desired = Some(desired);
        changed
    }

    /// Takes a desired-properties patch notification.
    pub fn on_patch(&mut self, patch: &Map<String, Value>) -> PatchOutcome {
        let (Some(current), Some(next)) = (self.version(), version_of(patch)) else {
            return PatchOutcome::Refetch;
        };
        if next <= current {
            return PatchOutcome::Stale;
        }
        if next != current + 1 {
            return PatchOutcome::Refetch;
        }
        let patch = strip_metadata(patch.clone());
        if let Some(desired) = self.desired.as_mut() {
            ironedge_protocol::merge(desired, &patch);
            desired.insert("$version".into(), Value::from(next));
        }
        PatchOutcome::Applied(next)
    }
}

/// Drops `$metadata` (timestamps the hub adds) so that equal content compares equal.
fn strip_metadata(mut doc: Map<String, Value>) -> Map<String, Value> {
    doc.remove("$metadata");
    doc
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_next_patch_is_merged_and_older_ones_are_ignored() {
        let mut sync = TwinSync::default();
        assert!(sync.on_full(obj(json!({"a": 1, "b": {"c": 2}, "$version": 4}))));
        assert_eq!(
            sync.on_patch(&obj(json!({"b": {"c": null, "d": 3}, "$version": 5}))),
            PatchOutcome::Applied(5)
        );
        assert_eq!(
            sync.desired().unwrap(),
            &obj(json!({"a": 1, "b": {"d": 3}, "$version": 5}))
        );
        assert_eq!(
            sync.on_patch(&obj(json!({"a": 9, "$version": 5}))),
            PatchOutcome::Stale
        );
        assert_eq!(sync.version(), Some(5));
    }

    #[test]
    fn a_gap_or_an_unknown_twin_asks_for_a_full_pull() {
        let mut sync = TwinSync::default();
        assert_eq!(
            sync.on_patch(&obj(json!({"a": 1, "$version": 1}))),
            PatchOutcome::Refetch
        );
        sync.on_full(obj(json!({"$version": 2})));
        assert_eq!(
            sync.on_patch(&obj(json!({"a": 1, "$version": 4}))),
            PatchOutcome::Refetch
        );
        assert_eq!(sync.on_patch(&obj(json!({"a": 1}))), PatchOutcome::Refetch);
        assert_eq!(sync.version(), Some(2));
    }

    #[test]
    fn a_full_twin_equal_to_the_known_one_is_no_change() {
        let mut sync = TwinSync::default();
        assert!(sync.on_full(obj(json!({"a": 1, "$version": 2}))));
        assert!(!sync.on_full(obj(
            json!({"a": 1, "$version": 2, "$metadata": {"$lastUpdated": "x"}})
        )));
        assert!(sync.on_full(obj(json!({"a": 2, "$version": 3}))));
    }
}
