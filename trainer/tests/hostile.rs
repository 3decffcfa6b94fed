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
            let _ = trainer::run::eval::load(&path, None);
        }
    }

    #[test]
    fn config_overrides_set_exactly_the_key_they_name(preset in 0usize..3, key in 0usize..64, value in value()) {
        // A real key (every key of the config, nested ones dotted) and an arbitrary value: the
        // override either fails, naming the key, or sets that key to that value and nothing else.
        // Every preset, with the keys run.json leaves out at their defaults set away from them.
        let keys = keys();
        let key = &keys[key % keys.len()];
        let mut before = TrainConfig::preset(run_dir::config::PRESETS[preset]).unwrap();
        (before.cuda_graphs, before.deterministic, before.keep_checkpoints) = (false, true, 5);
        before.sdpa_backend = run_dir::config::SdpaBackend::Math;
        let mut config = before.clone();
        match config.set(&format!("{key}={value}")) {
            Err(e) => prop_assert!(e.to_string().contains(key.as_str()), "{e}"),
            Ok(()) => {
                let (old, new) = (flat(&before), flat(&config));
                for (k, v) in &new {
                    if k != key {
                        prop_assert_eq!(Some(v), old.get(k), "{} changed by --set {}={}", k, key, value);
                    }
                }
                let set = &new[key];
                let expected = serde_json::from_str(&value).unwrap_or_else(|_| serde_json::Value::String(value.clone()));
                prop_assert!(same(set, &expected), "{} = {} after --set {}={}", key, set, key, value);
                if let Err(e) = config.validate() {
                    prop_assert!(!e.to_string().is_empty());
                }
            }
        }
    }

    #[test]
    fn run_headers_with_one_value_changed_parse_or_say_why(key in 0usize..128, value in value()) {
        // A real run.json with one value replaced: RunHeader::parse (and its format-3 upgrade)
        // returns a header or a one-line error, never panics.
        let config = TrainConfig::preset("tiny").unwrap();
        let schedule = run_dir::ScheduleSpec::baseline();
        let plan = schedule.plan(&config).unwrap();
        let header = run_dir::RunHeader::new("r", config, schedule, plan, "cpu".into(), "2.11.0");
        let mut json = serde_json::to_value(&header).unwrap();
        let paths = paths(&json, "");
        let path = &paths[key % paths.len()];
        *json.pointer_mut(path).unwrap() = serde_json::from_str(&value).unwrap_or(serde_json::Value::String(value.clone()));
        // As written now, and as a format-3 file (which goes through the upgrade first).
        let mut old = json.clone();
        if path != "/format" {
            old["format"] = 3.into();
        }
        for json in [json, old] {
            match run_dir::RunHeader::parse(std::path::Path::new("run.json"), &serde_json::to_vec(&json).unwrap()) {
                Ok(parsed) => prop_assert!(parsed.format == run_dir::header::FORMAT),
                Err(e) => prop_assert!(!e.to_string().contains('\n'), "{e}"),
            }
        }
    }
}

/// Equal JSON, numbers compared as numbers (1 and 1.0 are the same value).
fn same(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        _ => a == b,
    }
}

/// Values a user might type after `--set key=`: numbers, booleans, null, lists, text.
fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|x| x.to_string()),
        Just("true".to_string()),
        Just("null".to_string()),
        Just("[0.5,1]".to_string()),
        "[a-z:_0-9-]{0,12}",
    ]
}

/// Every key `--set` takes, dotted.
fn keys() -> Vec<String> {
    let mut out: Vec<String> = flat(&TrainConfig::preset("tiny").unwrap()).into_keys().collect();
    out.extend(["cuda_graphs", "deterministic", "keep_checkpoints", "sdpa_backend"].map(String::from));
    out.sort();
    out.dedup();
    out
}

/// The config's leaves by dotted key.
fn flat(config: &TrainConfig) -> std::collections::BTreeMap<String, serde_json::Value> {
    fn walk(prefix: &str, value: serde_json::Value, out: &mut std::collections::BTreeMap<String, serde_json::Value>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() { k } else { format!("{prefix}.{k}") };
                    walk(&key, v, out);
                }
            }
            leaf => {
                out.insert(prefix.to_string(), leaf);
            }
        }
    }
    let mut out = std::collections::BTreeMap::new();
    walk("", serde_json::to_value(config).unwrap(), &mut out);
    // Execution keys stay out of run.json at their defaults; they are keys all the same.
    out.entry("cuda_graphs".into()).or_insert(config.cuda_graphs.into());
    out.entry("deterministic".into()).or_insert(config.deterministic.into());
    out.entry("keep_checkpoints".into()).or_insert(config.keep_checkpoints.into());
    out.entry("sdpa_backend".into()).or_insert(serde_json::to_value(config.sdpa_backend).unwrap());
    out
}

/// JSON pointers of every value in `value` (objects and their leaves).
fn paths(value: &serde_json::Value, prefix: &str) -> Vec<String> {
    let mut out = vec![prefix.to_string()];
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.extend(paths(v, &format!("{prefix}/{k}")));
            }
        }
        serde_json::Value::Array(items) => {
            for (i, v) in items.iter().enumerate().take(3) {
                out.extend(paths(v, &format!("{prefix}/{i}")));
            }
        }
        _ => {}
    }
    out.into_iter().filter(|p| !p.is_empty()).collect()
}
