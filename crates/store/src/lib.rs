//! Durable per-endpoint message queues and key-value state on redb.
