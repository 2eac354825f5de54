//! LMDB store (being written).
