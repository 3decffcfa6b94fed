//! Text → token ids: GPT-2 BPE (tiktoken's `r50k_base`) or raw bytes.

use rayon::prelude::*;
use run_dir::config::TokenizerKind;

/// A ready-to-use tokenizer.
pub enum Tokenizer {
    Gpt2(Box<Gpt2Bpe>),
    Bytes,
}

/// GPT-2's BPE (`r50k_base`): tiktoken-rs's ranks, merges and decoder, with its pre-tokenizer
/// rewritten without look-around so it runs on a DFA instead of `fancy_regex`'s backtracking
/// (GitHub's `bpe-openai` does the same): about twice as fast, the same ids (tested against
/// tiktoken-rs's `encode_ordinary`).
pub struct Gpt2Bpe {
    core: tiktoken_rs::CoreBPE,
    ranks: rustc_hash::FxHashMap<Vec<u8>, tiktoken_rs::Rank>,
    /// GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    /// as three patterns tried in order: the first with `\s+$` for the look-ahead at the end of
    /// the text, the second `\s+\s` whose last character is given back (`\s+(?!\S)` before a
    /// non-space), the third `\s+`.
    pieces: regex_automata::meta::Regex,
}

/// Which of [`Gpt2Bpe::pieces`]' patterns gives back its last character.
const GIVES_BACK_LAST: [bool; 3] = [false, true, false];

impl Gpt2Bpe {
    fn new() -> anyhow::Result<Gpt2Bpe> {
        let core = tiktoken_rs::r50k_base()?;
        let ranks = ordinary_tokens(&core).into_iter().zip(0..).collect();
        let pieces = regex_automata::meta::Regex::new_many(&[
            r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+$",
            r"\s+\s",
            r"\s+",
        ])?;
        Ok(Gpt2Bpe { core, ranks, pieces })
    }

    /// Tokens of `text` without special tokens, as tiktoken's `encode_ordinary`.
    fn encode_ordinary(&self, text: &str) -> Vec<u16> {
        let mut cache = self.pieces.create_cache();
        let mut ids = Vec::with_capacity(text.len() / 4 + 1);
        let mut at = 0;
        while at < text.len() {
            let input = regex_automata::Input::new(text).range(at..).anchored(regex_automata::Anchored::Yes);
            // Every character starts some alternative (`\s+` or ` ?[^\s\p{L}\p{N}]+` at worst).
            let found = self.pieces.search_with(&mut cache, &input).expect("GPT-2's pattern matches every character");
            let mut end = found.end();
            if GIVES_BACK_LAST[found.pattern().as_usize()] {
                end -= text[..end].chars().next_back().map_or(0, char::len_utf8);
            }
            let piece = &text.as_bytes()[at..end];
            match self.ranks.get(piece) {
                Some(&rank) => ids.push(rank as u16),
                // Not one token, so at least two bytes (every byte is a token).
                None => ids.extend(
                    tiktoken_rs::byte_pair_split(piece, &self.ranks).into_iter().map(|part| self.ranks[part] as u16),
                ),
            }
            at = end;
        }
        ids
    }
}

impl Tokenizer {
    /// Build the tokenizer (GPT-2's BPE ranks are embedded in tiktoken-rs; no download).
    pub fn new(kind: TokenizerKind) -> anyhow::Result<Tokenizer> {
        Ok(match kind {
            TokenizerKind::Gpt2 => Tokenizer::Gpt2(Box::new(Gpt2Bpe::new()?)),
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

    /// Tokens of `text`, without special tokens (`<|endoftext|>` in the text is plain text). A long
    /// text is cut where the BPE's pre-tokenizer must cut anyway ([`split_points`]) and its pieces
    /// are encoded on every core: the ids are those of one `encode_ordinary` call.
    pub fn encode(&self, text: &str) -> Vec<u16> {
        match self {
            Tokenizer::Gpt2(bpe) if text.len() > 2 * PARALLEL_CHUNK_BYTES => {
                let cuts = split_points(text, PARALLEL_CHUNK_BYTES);
                let pieces: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
                let ids: Vec<Vec<u16>> = pieces.par_iter().map(|p| encode_gpt2(bpe, p)).collect();
                ids.concat()
            }
            Tokenizer::Gpt2(bpe) => encode_gpt2(bpe, text),
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
                bpe.core.decode(ids).unwrap_or_else(|_| String::from("\u{fffd}"))
            }
            Tokenizer::Bytes => {
                let bytes: Vec<u8> = tokens.iter().filter(|&&t| t < 256).map(|&t| t as u8).collect();
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// The GPT-2 BPE's byte string of every ordinary token, by rank (0..50,256): the table a
    /// reference implementation (Python's `tiktoken`) is built from to compare speed and ids.
    pub fn gpt2_ranks() -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(ordinary_tokens(&tiktoken_rs::r50k_base()?))
    }

    /// Tokenize documents in parallel, in order, each prefixed by `<|endoftext|>`.
    pub fn encode_documents<S: AsRef<str> + Sync>(&self, documents: &[S]) -> Vec<u16> {
        let per_doc: Vec<Vec<u16>> = documents.par_iter().map(|d| self.encode_document(d.as_ref())).collect();
        per_doc.concat()
    }
}

/// The byte string of each of GPT-2's ordinary tokens (ranks 0..50,256; 50,256 is `<|endoftext|>`).
fn ordinary_tokens(core: &tiktoken_rs::CoreBPE) -> Vec<Vec<u8>> {
    core._decode_native_and_split((0..50_256).collect()).collect()
}

/// Text above twice this is encoded in pieces of about this many bytes, in parallel.
const PARALLEL_CHUNK_BYTES: usize = 64 << 10;

fn encode_gpt2(bpe: &Gpt2Bpe, text: &str) -> Vec<u16> {
    bpe.encode_ordinary(text)
}

/// Byte offsets `0 = c_0 < c_1 < … < c_k = text.len()` cutting `text` into pieces of about
/// `chunk` bytes whose encodings, concatenated, equal the whole text's. A cut is made only just
/// after a `\n` that follows a character that is not whitespace and precedes an ASCII letter
/// (`"…x\nT…"`): GPT-2's pattern (`'s|'t|…| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`)
/// ends a piece at `x` (no alternative takes a non-space and the `\n` after it), makes the `\n` a
/// piece of its own both in the whole text (`\s+` once `\s+(?!\S)` fails before `T`) and at the
/// end of the left part (`\s+(?!\S)` at the end), and starts the right part's scan at `T` as the
/// whole text's scan does. Text without such a place stays one piece.
pub fn split_points(text: &str, chunk: usize) -> Vec<usize> {
    let bytes = text.as_bytes();
    // `\s` is Unicode's White_Space (U+00A0, U+2003, ...), as `char::is_whitespace`.
    let is_cut = |at: usize| {
        bytes[at] == b'\n'
            && bytes.get(at + 1).is_some_and(u8::is_ascii_alphabetic)
            && text[..at].chars().next_back().is_some_and(|c| !c.is_whitespace())
    };
    let mut cuts = vec![0];
    let mut from = chunk;
    while from < bytes.len() {
        match (from..bytes.len()).find(|&at| is_cut(at)) {
            Some(at) => {
                cuts.push(at + 1);
                from = at + 1 + chunk;
            }
            None => break,
        }
    }
    cuts.push(bytes.len());
    cuts
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

    proptest::proptest! {
        /// Encoding in pieces cut at `split_points` gives the ids of one `encode_ordinary` call,
        /// on text made of the characters the pattern treats differently.
        #[test]
        fn pieces_encode_as_the_whole(
            parts in proptest::collection::vec(proptest::sample::select(vec![
                "a", "T", "x", " ", "  ", "\n", "\n\n", ".", "'s", "'", "7", "é", "\u{a0}", "\u{2003}", "\t", "\r\n", "!?",
            ]), 0..400),
            chunk in 1usize..40,
        ) {
            let tok = Tokenizer::new(TokenizerKind::Gpt2).unwrap();
            let Tokenizer::Gpt2(bpe) = &tok else { unreachable!() };
            let text: String = parts.concat();
            let cuts = split_points(&text, chunk);
            let pieces: Vec<u16> = cuts.windows(2).flat_map(|w| encode_gpt2(bpe, &text[w[0]..w[1]])).collect();
            proptest::prop_assert_eq!(&pieces, &encode_gpt2(bpe, &text));
            // ... and the ids of tiktoken-rs's own `encode_ordinary` (its look-ahead regex).
            let reference: Vec<u16> = bpe.core.encode_ordinary(&text).into_iter().map(|t| t as u16).collect();
            proptest::prop_assert_eq!(pieces, reference);
        }

        /// Any text at all (every Unicode category, control characters) pre-tokenizes as
        /// tiktoken-rs's look-ahead pattern does.
        #[test]
        fn any_text_encodes_as_tiktoken(text in "\\PC{0,60}|[ \t\n\r\u{a0}\u{2003}\u{85}a'1.]{0,40}|.{0,60}") {
            let tok = Tokenizer::new(TokenizerKind::Gpt2).unwrap();
            let Tokenizer::Gpt2(bpe) = &tok else { unreachable!() };
            let reference: Vec<u16> = bpe.core.encode_ordinary(&text).into_iter().map(|t| t as u16).collect();
            proptest::prop_assert_eq!(tok.encode(&text), reference);
        }
    }

    #[test]
    fn a_long_text_is_encoded_in_parallel_as_one_call_would() {
        let tok = Tokenizer::new(TokenizerKind::Gpt2).unwrap();
        let Tokenizer::Gpt2(bpe) = &tok else { unreachable!() };
        let line = "Call me Ishmael. Some years ago\u{a0}\nnever mind how long precisely \n";
        let text: String = (0..4000).map(|i| format!("{line}{i}.\nThe {i}'s\n\n")).collect();
        assert!(text.len() > 2 * PARALLEL_CHUNK_BYTES);
        assert!(split_points(&text, PARALLEL_CHUNK_BYTES).len() > 3, "the text is cut");
        let reference: Vec<u16> = bpe.core.encode_ordinary(&text).into_iter().map(|t| t as u16).collect();
        assert_eq!(tok.encode(&text), reference);
    }

    #[test]
    fn bytes_are_their_own_ids_and_documents_are_separated() {
        let tok = Tokenizer::new(TokenizerKind::Bytes).unwrap();
        assert_eq!(tok.encode_documents(&["ab", "c"]), vec![256, 97, 98, 256, 99]);
        assert_eq!(TokenizerKind::Bytes.padded_vocab_size(), 320);
        assert_eq!(TokenizerKind::Gpt2.padded_vocab_size(), 50_304);
    }
}
