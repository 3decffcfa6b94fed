//! Data: token shards, tokenizers, corpus and FineWeb preparation, and the batch loader.

pub mod corpus;
pub mod fineweb;
pub mod loader;
pub mod shard;
pub mod sink;
pub mod tokenizer;

pub use loader::{BatchLoader, DataPosition, TokenDataset};
pub use shard::{write_shard, Shard, ShardError};
pub use tokenizer::Tokenizer;
