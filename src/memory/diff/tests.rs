//! Diff tests: known outputs, edge cases, and properties (the diff applied
//! to the old text gives the new one; the script is a shortest one).

use proptest::prelude::*;

use super::*;

/// Applies a unified diff to `old`, checking every context and removed
/// line and every hunk header's counts; panics on any mismatch.
fn apply(old: &str, diff: &str) -> String {
    if diff.is_empty() {
        return old.to_string();
    }
    let old_lines: Vec<&str> = old.split_inclusive('\n').collect();
    let lines: Vec<&str> = diff.split_inclusive('\n').collect();
    assert!(lines[0].starts_with("--- ") && lines[1].starts_with("+++ "));
    let mut out = String::new();
    let mut at = 0; // next old line to copy
    let mut i = 2;
    while i < lines.len() {
        let header = lines[i].trim_end();
        let nums: Vec<usize> = header
            .strip_prefix("@@ -")
            .and_then(|h| h.strip_suffix(" @@"))
            .unwrap_or_else(|| panic!("bad hunk header {header:?}"))
            .split([',', ' ', '+'])
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().unwrap())
            .collect();
        let [old_start, old_count, new_start, new_count] = nums[..] else {
            panic!("bad hunk header {header:?}")
        };
        let first = if old_count == 0 {
            old_start
        } else {
            old_start - 1
        };
        assert!(first >= at, "hunks overlap or go backwards");
        for l in &old_lines[at..first] {
            out.push_str(l);
        }
        at = first;
        let emitted = out.split_inclusive('\n').count();
        let want_new = if new_count == 0 { emitted } else { emitted + 1 };
        assert_eq!(new_start, want_new, "new start of {header:?}");
        i += 1;
        let (mut seen_old, mut seen_new) = (0, 0);
        while i < lines.len() && !lines[i].starts_with("@@") {
            let sign = lines[i].as_bytes()[0];
            let mut body = lines[i][1..].to_string();
            i += 1;
            if lines.get(i).is_some_and(|l| l.starts_with('\\')) {
                assert_eq!(lines[i], "\\ No newline at end of file\n");
                assert_eq!(body.pop(), Some('\n'));
                i += 1;
            }
            match sign {
                b' ' | b'-' => {
                    assert_eq!(old_lines[at], body, "context or removed line differs");
                    at += 1;
                    seen_old += 1;
                }
                b'+' => {}
                other => panic!("bad line start {:?}", other as char),
            }
            if sign != b'-' {
                out.push_str(&body);
                seen_new += 1;
            }
        }
        assert_eq!((seen_old, seen_new), (old_count, new_count), "{header}");
    }
    for l in &old_lines[at..] {
        out.push_str(l);
    }
    out
}

#[test]
fn equal_texts_give_nothing() {
    assert_eq!(unified("", "", "a", "b"), "");
    assert_eq!(unified("x\ny\n", "x\ny\n", "a", "b"), "");
}

#[test]
fn matches_diff_u() {
    let old = "a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\n";
    let new = "a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\nm\nn\no\np\nq";
    // `diff -u --label old --label new` (which writes a count of 1 as
    // `-14,3 +14,4`, and so do we: counts are always written).
    let want = "--- old\n+++ new\n@@ -1,5 +1,5 @@\n a\n-b\n+B\n c\n d\n e\n@@ -14,3 +14,4 @@\n n\n o\n p\n+q\n\\ No newline at end of file\n";
    assert_eq!(unified(old, new, "old", "new"), want);
    assert_eq!(apply(old, want), new);
}

#[test]
fn close_changes_share_a_hunk() {
    // Six kept lines between two changes: one hunk; seven: two.
    let old = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n";
    let six = old.replace("2\n", "two\n").replace("9\n", "nine\n");
    let d = unified(old, &six, "a", "b");
    assert_eq!(d.matches("@@ -").count(), 1, "{d}");
    assert!(d.contains("@@ -1,11 +1,11 @@"), "{d}");
    let seven = old.replace("2\n", "two\n").replace("10\n", "ten\n");
    let d = unified(old, &seven, "a", "b");
    assert_eq!(d.matches("@@ -").count(), 2, "{d}");
    assert!(
        d.contains("@@ -1,5 +1,5 @@") && d.contains("@@ -7,5 +7,5 @@"),
        "{d}"
    );
}

#[test]
fn empty_sides_and_newlines() {
    assert_eq!(
        unified("", "x\ny\n", "a", "b"),
        "--- a\n+++ b\n@@ -0,0 +1,2 @@\n+x\n+y\n"
    );
    assert_eq!(
        unified("x\ny\n", "", "a", "b"),
        "--- a\n+++ b\n@@ -1,2 +0,0 @@\n-x\n-y\n"
    );
    // Only the last line's ending differs.
    let d = unified("x\ny\n", "x\ny", "a", "b");
    assert_eq!(
        d,
        "--- a\n+++ b\n@@ -1,2 +1,2 @@\n x\n-y\n+y\n\\ No newline at end of file\n"
    );
    assert_eq!(apply("x\ny\n", &d), "x\ny");
}

#[test]
fn past_the_edit_limit_the_middle_is_replaced() {
    let a: Vec<&str> = vec!["k\n", "1\n", "2\n", "3\n", "k2\n"];
    let b: Vec<&str> = vec!["k\n", "x\n", "2\n", "y\n", "k2\n"];
    // The shortest script needs 4 edits; allowed 3, the middle goes whole.
    let ops = edit_script(&a, &b, 3);
    let changed: Vec<Op> = ops
        .iter()
        .copied()
        .filter(|o| !matches!(o, Op::Keep(..)))
        .collect();
    assert_eq!(
        changed,
        [
            Op::Remove(1),
            Op::Remove(2),
            Op::Remove(3),
            Op::Add(1),
            Op::Add(2),
            Op::Add(3)
        ]
    );
    let short = edit_script(&a, &b, 4);
    assert!(short.contains(&Op::Keep(2, 2)), "{short:?}");
}

/// Length of a longest common subsequence, by dynamic programming.
fn lcs(a: &[&str], b: &[&str]) -> usize {
    let mut row = vec![0usize; b.len() + 1];
    for x in a {
        let mut diag = 0;
        for (j, y) in b.iter().enumerate() {
            let up = row[j + 1];
            row[j + 1] = if x == y { diag + 1 } else { up.max(row[j]) };
            diag = up;
        }
    }
    row[b.len()]
}

fn text() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(
            prop::sample::select(vec!["a", "b", "c", "key = 1", ""]),
            0..40,
        ),
        any::<bool>(),
    )
        .prop_map(|(lines, last_newline)| {
            let mut t = lines.join("\n");
            if last_newline && !lines.is_empty() {
                t.push('\n');
            }
            t
        })
}

proptest! {
    #[test]
    fn applying_the_diff_gives_the_new_text(old in text(), new in text()) {
        let d = unified(&old, &new, "old", "new");
        prop_assert_eq!(d.is_empty(), old == new);
        prop_assert_eq!(apply(&old, &d), new);
    }

    #[test]
    fn the_script_is_a_shortest_one(old in text(), new in text()) {
        let a: Vec<&str> = old.split_inclusive('\n').collect();
        let b: Vec<&str> = new.split_inclusive('\n').collect();
        let ops = edit_script(&a, &b, MAX_EDITS);
        let kept = ops.iter().filter(|o| matches!(o, Op::Keep(..))).count();
        prop_assert_eq!(kept, lcs(&a, &b));
        prop_assert_eq!(ops.len(), a.len() + b.len() - kept);
    }
}
