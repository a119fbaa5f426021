//! Cell timestamps: signed 64-bit microseconds since the Unix epoch.

/// A cell timestamp in microseconds. `Timestamp::SERVER` (-1) asks the server to assign one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// "Use server time" in a mutation.
    pub const SERVER: Timestamp = Timestamp(-1);
    /// The largest timestamp.
    pub const MAX: Timestamp = Timestamp(i64::MAX);
    /// The smallest valid cell timestamp.
    pub const MIN: Timestamp = Timestamp(0);

    /// Microseconds since the Unix epoch.
    pub fn micros(self) -> i64 {
        self.0
    }
}
