//! Real-mode `net` (being written).
