//! Cross-run state ledger (being written).
