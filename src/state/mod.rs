//! Where the soak's record lives: the one [`store::Store`] over either
//! backend (the embedded SQLite file, or a JetStream KV bucket and streams
//! shared by several watchers), the leader lease and fence that let only one
//! of those watchers write and act, and the migration between backends.
//! The pure history these records are folded into is [`crate::soak`].

pub mod jetstream;
pub mod lease;
pub mod migrate;
pub mod sqlite;
pub mod store;
pub mod types;
