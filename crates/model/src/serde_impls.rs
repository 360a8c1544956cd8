//! `serde` impls for the validated documents: serialize to the manifest JSON, deserialize by
//! validating (so a stored deployment can never be read back half-checked).

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::{EdgeAgentDesired, EdgeHubDesired, Manifest};

macro_rules! validated_serde {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                self.to_value().serialize(serializer)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = Value::deserialize(deserializer)?;
                <$ty>::from_value(&value).map_err(D::Error::custom)
            }
        }
    )*};
}

validated_serde!(Manifest, EdgeAgentDesired, EdgeHubDesired);
