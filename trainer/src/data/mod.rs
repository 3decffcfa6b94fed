//! Data: token shards, tokenizers, a corpus's documents (the embedded one, FineWeb-edu, or a
//! researcher's own files) streamed into shards, and the batch loader.

pub mod corpus;
pub mod documents;
pub mod fineweb;
pub mod loader;
pub mod parquet_text;
pub mod prepare;
pub mod shard;
pub mod sink;
pub mod tokenizer;

pub use loader::{BatchLoader, DataPosition, TokenDataset};
pub use shard::{write_shard, Shard, ShardError};
pub use tokenizer::Tokenizer;
