//! IoT Edge deployment-manifest model: types, schema versions, validation with JSON paths.
