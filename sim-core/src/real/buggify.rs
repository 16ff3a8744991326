//! `buggify!` in a real build: compiled out. It is the constant `false`, so the faults it
//! guards are dead code the compiler removes; its argument is never evaluated.

/// Always `false` in a real build: production code never injects faults.
#[macro_export]
macro_rules! buggify {
    () => {
        false
    };
    ($probability:expr) => {
        false
    };
}
