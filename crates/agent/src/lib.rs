//! Edge agent: cloud sync, status reporting, module identities, workload API, edge CA.
