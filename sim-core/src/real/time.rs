//! Real-mode `time` (being written).
