//! Random bytes into every parser the trainer has: an error, never a panic.

use proptest::prelude::*;
use run_dir::TrainConfig;
use trainer::data::Shard;

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn shard_reader_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..3000), valid_header in any::<bool>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.bin");
        let mut bytes = bytes;
        if valid_header && bytes.len() >= 12 {
            // Often a right magic and version, so the length and token checks get exercised too.
            bytes[0..4].copy_from_slice(&20_240_520i32.to_le_bytes());
            bytes[4..8].copy_from_slice(&1i32.to_le_bytes());
        }
        std::fs::write(&path, &bytes).unwrap();
        if let Ok(shard) = Shard::open(&path) {
            let _ = shard.check_vocab(257);
            prop_assert_eq!(bytes.len(), 1024 + 2 * shard.len());
        }
    }

    #[test]
    fn hellaswag_reader_never_panics(text in ".{0,400}", json_ish in "\\{\"ctx\": ?\"[a-z ]{0,10}\", \"endings\": \\[(\"[a-z]{0,3}\",? ?){0,6}\\], \"label\": [-0-9a-z\"]{0,3}\\}") {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.jsonl");
        for body in [text.as_str(), json_ish.as_str()] {
            std::fs::write(&path, body).unwrap();
            let _ = trainer::eval::load(&path, None);
        }
    }

    #[test]
    fn config_overrides_never_panic(key in "[a-z_.]{0,20}", value in ".{0,20}") {
        let mut config = TrainConfig::preset("tiny").unwrap();
        if config.set(&format!("{key}={value}")).is_ok() {
            let _ = config.validate();
        }
    }

    #[test]
    fn config_json_never_panics(text in ".{0,300}") {
        let _ = serde_json::from_str::<TrainConfig>(&text);
    }
}
