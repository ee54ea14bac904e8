//! API keys: lists, the key file format, lookups.

use std::path::PathBuf;

use super::super::api_keys::{MAX_KEY_BYTES, MIN_KEY_BYTES};
use super::super::{ApiKeys, Method, SetupError};

/// A file under the temp dir, removed when dropped.
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!("dao-auth-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn name_of(keys: &ApiKeys, key: &str) -> Option<String> {
    keys.lookup(key.as_bytes()).map(|id| id.as_str().to_owned())
}

#[test]
fn unnamed_keys_get_a_digest_id() {
    let keys = ApiKeys::from_keys(["test-key-0000000000001", "test-key-0000000000002"]).unwrap();
    assert_eq!(keys.len(), 2);
    let id = keys.lookup(b"test-key-0000000000001").unwrap();
    // The first 8 hex digits of SHA-256("test-key-0000000000001").
    assert_eq!(id.as_str(), "key-fb96d6cf");
    assert_eq!(id.method(), Method::ApiKey);
    assert_ne!(
        name_of(&keys, "test-key-0000000000002").unwrap(),
        "key-fb96d6cf"
    );
    assert_eq!(name_of(&keys, "test-key-0000000000003"), None);
    assert_eq!(format!("{keys:?}"), "ApiKeys { keys: 2 }");
}

#[test]
fn key_file_with_comments_names_and_blank_lines() {
    let file = TempFile::new(
        "keys.txt",
        "# Production keys\n\
         \n\
         k_live_8Jq2vR7wXn4pLz9sTb6m   billing-service\n\
         \t k_live_Qm3nW8cV1xZ5rT7yHs2d\tbilling-service  \r\n\
         \x20  # an indented comment\n\
         k_live_Zt4bN6yPq1wE9uJc5kLa\n\
         k#live_hash_inside_is_fine__ reporting\n",
    );
    let keys = ApiKeys::from_file(&file.0).unwrap();
    assert_eq!(keys.len(), 4);
    assert_eq!(
        name_of(&keys, "k_live_8Jq2vR7wXn4pLz9sTb6m").unwrap(),
        "billing-service"
    );
    assert_eq!(
        name_of(&keys, "k_live_Qm3nW8cV1xZ5rT7yHs2d").unwrap(),
        "billing-service"
    );
    assert!(name_of(&keys, "k_live_Zt4bN6yPq1wE9uJc5kLa")
        .unwrap()
        .starts_with("key-"));
    assert_eq!(
        name_of(&keys, "k#live_hash_inside_is_fine__").unwrap(),
        "reporting"
    );
    // Exact bytes only: no trimming, no case folding, no prefixes.
    for near in [
        " k_live_8Jq2vR7wXn4pLz9sTb6m",
        "k_live_8Jq2vR7wXn4pLz9sTb6m ",
        "K_LIVE_8JQ2VR7WXN4PLZ9STB6M",
        "k_live_8Jq2vR7wXn4pLz9sTb6",
        "k_live_8Jq2vR7wXn4pLz9sTb6mm",
        "billing-service",
        "# Production keys",
        "",
    ] {
        assert_eq!(name_of(&keys, near), None, "{near:?}");
    }
}

#[test]
fn lists_and_files_combine() {
    let file = TempFile::new("combine.txt", "file-key-00000000000001 from-file\n");
    let mut b = ApiKeys::builder();
    b.key("list-key-00000000000001", Some("from-list"))
        .unwrap()
        .file(&file.0)
        .unwrap()
        .text("text-key-00000000000001\n", "inline")
        .unwrap();
    let keys = b.build().unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(
        name_of(&keys, "list-key-00000000000001").unwrap(),
        "from-list"
    );
    assert_eq!(
        name_of(&keys, "file-key-00000000000001").unwrap(),
        "from-file"
    );
    assert!(name_of(&keys, "text-key-00000000000001").is_some());
}

fn text_error(text: &str) -> String {
    let mut b = ApiKeys::builder();
    match b.text(text, "keys.txt") {
        Ok(_) => panic!("accepted {text:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_lines_are_named_and_keys_never_echoed() {
    let good = "good-key-00000000000001";
    let cases = [
        ("# c\nshort-key\n", "line 2", "shorter than 16"),
        (
            "k_live_8Jq2vR7wXn4pLz9sTb6m name extra\n",
            "line 1",
            "expected `KEY` or `KEY NAME`",
        ),
        (
            "k_live_8Jq2vR7wXn4pLz9sTb6m # note\n",
            "line 1",
            "expected `KEY` or `KEY NAME`",
        ),
        (
            "k_live_8Jq2vR7wXn4pLz9sTb6m #note\n",
            "line 1",
            "name starts with `#`",
        ),
        (
            "\n\nk_live_8Jq2vR7wXn4pLz9sTb6é name\n",
            "line 3",
            "visible ASCII",
        ),
    ];
    for (text, line, reason) in cases {
        let e = text_error(&format!("{good}\n{text}"));
        let line_no: usize = line[5..].parse::<usize>().unwrap() + 1;
        assert!(e.contains(&format!("keys.txt, line {line_no}")), "{e}");
        assert!(e.contains(reason), "{e}");
        assert!(
            !e.contains("k_live") && !e.contains("short-key"),
            "leaks the key: {e}"
        );
    }
    let long = format!("{}\n", "x".repeat(MAX_KEY_BYTES + 1));
    assert!(text_error(&long).contains("longer than 512"));
    let long_name = format!("{good} {}\n", "n".repeat(129));
    assert!(text_error(&long_name).contains("1 to 128"));
}

#[test]
fn duplicate_keys_are_refused_naming_both_places() {
    let e = text_error("dup-key-000000000000001 a\n# x\ndup-key-000000000000001 b\n");
    assert!(
        e.contains("line 3") && e.contains("first at keys.txt, line 1"),
        "{e}"
    );
    let mut b = ApiKeys::builder();
    b.key("dup-key-000000000000001", None).unwrap();
    let e = b
        .text("dup-key-000000000000001\n", "f")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("f, line 1") && e.contains("API key #1"), "{e}");
}

#[test]
fn programmatic_keys_are_checked_too() {
    let mut b = ApiKeys::builder();
    assert!(b.key(&"k".repeat(MIN_KEY_BYTES - 1), None).is_err());
    assert!(b.key(&"k".repeat(MIN_KEY_BYTES), None).is_ok());
    assert!(b.key("has a space in the key", None).is_err());
    assert!(b.key("#starts-with-hash-000", None).is_err());
    assert!(b.key("fine-key-0000000000001", Some("has space")).is_err());
    assert!(b.key("fine-key-0000000000001", Some("")).is_err());
    assert!(b.key("fine-key-0000000000001", Some("ok")).is_ok());
}

#[test]
fn empty_sets_and_missing_files_are_errors() {
    let file = TempFile::new("empty.txt", "# nothing here\n\n");
    let e = ApiKeys::from_file(&file.0).unwrap_err();
    assert!(e.to_string().contains("no key given"), "{e}");
    assert!(ApiKeys::from_keys(Vec::<String>::new()).is_err());
    let missing = std::env::temp_dir().join("dao-auth-no-such-file.txt");
    let e = ApiKeys::from_file(&missing).unwrap_err();
    assert!(matches!(e, SetupError::Io { .. }));
    assert!(e.to_string().contains("dao-auth-no-such-file.txt"), "{e}");
    let bin = TempFile::new("binary.txt", "");
    std::fs::write(&bin.0, [0xff, 0xfe, 0x00]).unwrap();
    assert!(matches!(
        ApiKeys::from_file(&bin.0),
        Err(SetupError::Io { .. })
    ));
}

#[test]
fn constant_time_lookup_finds_every_entry_among_near_misses() {
    // 200 keys that share a long prefix and differ only in their tail, so
    // a byte-by-byte comparison would run long on every one of them; and
    // the same digest comparison path is taken for hits and misses.
    let shared = "k_shared_prefix_0123456789_";
    let keys: Vec<String> = (0..200).map(|i| format!("{shared}{i:04}")).collect();
    let mut b = ApiKeys::builder();
    for (i, key) in keys.iter().enumerate() {
        b.key(key, Some(&format!("client-{i}"))).unwrap();
    }
    let set = b.build().unwrap();
    // Every position, first and last included, maps to its own name.
    for (i, key) in keys.iter().enumerate() {
        assert_eq!(name_of(&set, key).unwrap(), format!("client-{i}"));
    }
    // Near misses: one byte changed at the start, middle or end; a prefix;
    // an extension.
    let base = keys[137].clone();
    let mut near = Vec::new();
    for at in [0, base.len() / 2, base.len() - 1] {
        let mut bytes = base.clone().into_bytes();
        bytes[at] ^= 0x40; // out of the alphabet: not another key
        near.push(String::from_utf8(bytes).unwrap());
    }
    near.push(base[..base.len() - 1].to_owned());
    near.push(format!("{base}0"));
    near.push(format!("{shared}9999"));
    for miss in &near {
        assert_eq!(name_of(&set, miss), None, "{miss}");
    }
    // Longer than any key can be: refused without hashing.
    assert_eq!(set.lookup(&vec![b'k'; MAX_KEY_BYTES + 1]), None);
    assert_eq!(set.lookup(b""), None);
}
