//! IoT Hub route and condition language: parser, type-checked compiler, evaluator, router.
