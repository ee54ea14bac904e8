//! History tests: epochs, pruning, persistence across restarts, and a
//! damaged state directory that is reported, never fatal.

use std::fs;

use super::*;
use crate::memory::test_dir::TestDir;

fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn sha256_is_hex_of_the_text() {
    assert_eq!(
        sha256_hex("abc"),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    assert_eq!(sha256_hex("").len(), 64);
}

#[test]
fn source_names() {
    let all = [
        Source::Start,
        Source::File,
        Source::Signal,
        Source::Api,
        Source::Rollback,
        Source::Guard,
    ];
    let json: Vec<String> = all
        .iter()
        .map(|s| serde_json::to_string(s).unwrap())
        .collect();
    assert_eq!(
        json,
        [
            "\"start\"",
            "\"file\"",
            "\"signal\"",
            "\"api\"",
            "\"rollback\"",
            "\"guard\""
        ]
    );
    for s in all {
        assert_eq!(format!("\"{s}\""), serde_json::to_string(&s).unwrap());
    }
}

#[test]
fn in_memory_only() {
    let (mut h, warnings) = History::open(None, 2).unwrap();
    assert!(warnings.is_empty() && h.list().is_empty() && h.latest().is_none());
    assert_eq!(h.dir(), None);
    for (i, text) in ["a = 1\n", "a = 2\n", "a = 3\n"].iter().enumerate() {
        let s = h.record(Source::File, text, None, 100 + i as u64).unwrap();
        assert_eq!(s.epoch, i as u64 + 1);
        assert_eq!(s.sha256, sha256_hex(text));
    }
    let epochs: Vec<u64> = h.list().iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, [2, 3]);
    assert!(h.get(1).is_none());
    assert_eq!(&*h.get(2).unwrap().text, "a = 2\n");
    assert_eq!(h.latest().unwrap().time_unix, 102);
    assert_eq!(h.next_epoch(), 4);
}

#[test]
fn persisted_pruned_and_continued_across_restarts() {
    let tmp = TestDir::new("history");
    let dir = tmp.path().join("state");
    {
        // The state directory and its snapshots/ are created.
        let (mut h, warnings) = History::open(Some(&dir), 3).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        h.record(Source::Start, "x = 1\n", None, 10).unwrap();
        h.record(Source::Api, "x = 2\n", None, 20).unwrap();
        h.record(
            Source::Rollback,
            "x = 1\n",
            Some("rolled back to 1".into()),
            30,
        )
        .unwrap();
        h.record(Source::Guard, "x = 2\n", Some("5xx 40%".into()), 40)
            .unwrap();
        assert_eq!(h.list().len(), 3);
    }
    let snaps = dir.join("snapshots");
    assert_eq!(
        files(&snaps),
        [
            "00000000000000000002.json",
            "00000000000000000003.json",
            "00000000000000000004.json"
        ]
    );
    let (mut h, warnings) = History::open(Some(&dir), 3).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    let got: Vec<(u64, Source, &str, Option<&str>, u64)> = h
        .list()
        .iter()
        .map(|s| (s.epoch, s.source, &*s.text, s.note.as_deref(), s.time_unix))
        .collect();
    assert_eq!(
        got,
        [
            (2, Source::Api, "x = 2\n", None, 20),
            (3, Source::Rollback, "x = 1\n", Some("rolled back to 1"), 30),
            (4, Source::Guard, "x = 2\n", Some("5xx 40%"), 40),
        ]
    );
    let s = h.record(Source::Signal, "x = 3\n", None, 50).unwrap();
    assert_eq!(s.epoch, 5);
    drop(h);
    // A smaller `keep` prunes at start, files included.
    let (h, _) = History::open(Some(&dir), 1).unwrap();
    assert_eq!(h.list().len(), 1);
    assert_eq!(h.latest().unwrap().epoch, 5);
    assert_eq!(files(&snaps), ["00000000000000000005.json"]);
}

#[test]
fn damaged_files_are_reported_and_skipped() {
    let tmp = TestDir::new("history-bad");
    let dir = tmp.path();
    {
        let (mut h, _) = History::open(Some(dir), 20).unwrap();
        for i in 1..=6 {
            h.record(Source::File, &format!("n = {i}\n"), None, i)
                .unwrap();
        }
    }
    let snaps = dir.join("snapshots");
    let path = |e: u64| snaps.join(file_name(e));
    // 1: truncated; 2: garbage; 3: text edited (sha256 mismatch);
    // 4: moved to another epoch's name; 5: a directory (unreadable).
    let whole = fs::read(path(1)).unwrap();
    fs::write(path(1), &whole[..whole.len() / 2]).unwrap();
    fs::write(path(2), b"\x00\xffnot json").unwrap();
    let edited = fs::read_to_string(path(3))
        .unwrap()
        .replace("n = 3", "n = 33");
    fs::write(path(3), edited).unwrap();
    fs::rename(path(4), path(40)).unwrap();
    fs::remove_file(path(5)).unwrap();
    fs::create_dir(path(5)).unwrap();
    // An unfinished write, and a file of someone else's.
    fs::write(snaps.join(".00000000000000000007.json.tmp"), b"{\"ep").unwrap();
    fs::write(snaps.join("README"), b"notes").unwrap();

    let (mut h, warnings) = History::open(Some(dir), 20).unwrap();
    let epochs: Vec<u64> = h.list().iter().map(|s| s.epoch).collect();
    assert_eq!(epochs, [6]);
    assert_eq!(warnings.len(), 6, "{warnings:#?}");
    let has = |file: &str, what: &str| {
        warnings
            .iter()
            .any(|w| w.contains(file) && w.contains(what))
    };
    assert!(
        has("00000000000000000001.json", "not a snapshot"),
        "{warnings:#?}"
    );
    assert!(
        has("00000000000000000002.json", "not a snapshot"),
        "{warnings:#?}"
    );
    assert!(
        has("00000000000000000003.json", "does not match its sha256"),
        "{warnings:#?}"
    );
    assert!(
        has(
            "00000000000000000040.json",
            "holds epoch 4 but is named for 40"
        ),
        "{warnings:#?}"
    );
    assert!(
        has("00000000000000000005.json", "cannot read"),
        "{warnings:#?}"
    );
    assert!(
        has(".00000000000000000007.json.tmp", "unfinished"),
        "{warnings:#?}"
    );
    assert!(!snaps.join(".00000000000000000007.json.tmp").exists());
    assert!(snaps.join("README").exists());
    // Epochs go on after the highest one that loaded.
    assert_eq!(h.record(Source::File, "n = 7\n", None, 7).unwrap().epoch, 7);
}

#[test]
fn a_state_dir_that_cannot_be_created_is_an_error() {
    let tmp = TestDir::new("history-file");
    let file = tmp.path().join("plain");
    fs::write(&file, b"x").unwrap();
    let err = History::open(Some(&file), 5).unwrap_err();
    assert!(err.to_string().contains("plain"), "{err}");
}

#[test]
fn a_failed_write_changes_nothing() {
    let tmp = TestDir::new("history-gone");
    let (mut h, _) = History::open(Some(tmp.path()), 5).unwrap();
    h.record(Source::Start, "a\n", None, 1).unwrap();
    fs::remove_dir_all(tmp.path().join("snapshots")).unwrap();
    assert!(h.record(Source::Api, "b\n", None, 2).is_err());
    assert_eq!(h.list().len(), 1);
    assert_eq!(h.next_epoch(), 2);
}

#[test]
fn json_for_the_api() {
    let (mut h, _) = History::open(None, 5).unwrap();
    let s = h
        .record(
            Source::Rollback,
            "k = 1\n",
            Some("rolled back to 3".into()),
            9,
        )
        .unwrap();
    assert_eq!(
        s.to_json(false),
        serde_json::json!({
            "epoch": 1, "sha256": sha256_hex("k = 1\n"), "time_unix": 9,
            "source": "rollback", "note": "rolled back to 3",
        })
    );
    assert_eq!(s.to_json(true)["text"], "k = 1\n");
}
