//! Text → token ids: GPT-2 BPE (tiktoken's `r50k_base`) or raw bytes.

use rayon::prelude::*;
use run_dir::config::TokenizerKind;

/// A ready-to-use tokenizer.
pub enum Tokenizer {
    Gpt2(Box<tiktoken_rs::CoreBPE>),
    Bytes,
}

impl Tokenizer {
    /// Build the tokenizer (GPT-2's BPE ranks are embedded in tiktoken-rs; no download).
    pub fn new(kind: TokenizerKind) -> anyhow::Result<Tokenizer> {
        Ok(match kind {
            TokenizerKind::Gpt2 => Tokenizer::Gpt2(Box::new(tiktoken_rs::r50k_base()?)),
            TokenizerKind::Bytes => Tokenizer::Bytes,
        })
    }

    /// Which kind this is.
    pub fn kind(&self) -> TokenizerKind {
        match self {
            Tokenizer::Gpt2(_) => TokenizerKind::Gpt2,
            Tokenizer::Bytes => TokenizerKind::Bytes,
        }
    }

    /// Tokens of `text`, without special tokens (`<|endoftext|>` in the text is plain text).
    pub fn encode(&self, text: &str) -> Vec<u16> {
        match self {
            Tokenizer::Gpt2(bpe) => bpe.encode_ordinary(text).into_iter().map(|t| t as u16).collect(),
            Tokenizer::Bytes => text.bytes().map(u16::from).collect(),
        }
    }

    /// `<|endoftext|>` followed by the document's tokens (the documents' separator, as in GPT-2).
    pub fn encode_document(&self, text: &str) -> Vec<u16> {
        let mut tokens = Vec::with_capacity(text.len() / 3 + 1);
        tokens.push(self.kind().eot());
        tokens.extend(self.encode(text));
        tokens
    }

    /// Decode token ids back to text (lossy for partial UTF-8).
    pub fn decode(&self, tokens: &[u16]) -> String {
        match self {
            Tokenizer::Gpt2(bpe) => {
                let ids: Vec<_> = tokens.iter().map(|&t| t.into()).collect();
                bpe.decode(ids).unwrap_or_else(|_| String::from("\u{fffd}"))
            }
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = tokens.iter().filter(|&&t| t < 256).map(|&t| t as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// Tokenize documents in parallel, in order, each prefixed by `<|endoftext|>`.
    pub fn encode_documents<S: AsRef<str> + Sync>(&self, documents: &[S]) -> Vec<u16> {
        let per_doc: Vec<Vec<u16>> = documents.par_iter().map(|d| self.encode_document(d.as_ref())).collect();
        per_doc.concat()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpt2_matches_known_ids() {
        let tok = Tokenizer::new(TokenizerKind::Gpt2).unwrap();
        // "Hello world" in GPT-2 BPE is [15496, 995].
        assert_eq!(tok.encode("Hello world"), vec![15496, 995]);
        assert_eq!(tok.encode_document("Hello world"), vec![50256, 15496, 995]);
        assert_eq!(tok.decode(&[15496, 995]), "Hello world");
    }

    #[test]
    fn bytes_are_their_own_ids_and_documents_are_separated() {
        let tok = Tokenizer::new(TokenizerKind::Bytes).unwrap();
        assert_eq!(tok.encode_documents(&["ab", "c"]), vec![256, 97, 98, 256, 99]);
        assert_eq!(TokenizerKind::Bytes.padded_vocab_size(), 320);
        assert_eq!(TokenizerKind::Gpt2.padded_vocab_size(), 50_304);
    }
}
