//! Real-mode `disk` (being written).
