//! Real-mode `fs` (being written).
