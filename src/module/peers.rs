//! DMQ peers: the modules (and script channels) that exchange messages over
//! the bus, and their init callbacks.

/// The cluster answered us (or talked to us) for the first time since
/// startup: peers' init callbacks run once from here.
pub fn cluster_reached() {}
