//! Line diffs between two config texts, in unified format (`diff -u`), for
//! showing what a snapshot changed.
//!
//! The edit script is Myers' greedy O((N+M)·D) algorithm run on the lines
//! left after trimming the common prefix and suffix; its trace costs
//! O(D²) memory, so past `MAX_EDITS` differing lines the middle is shown
//! as one block removed and one added (still a correct diff, only not the
//! shortest). Lines are compared with their line ending; a last line
//! without one is marked `\ No newline at end of file`, as `diff` does.

use std::fmt::Write as _;

/// Lines of context around each change.
const CONTEXT: usize = 3;

/// Largest edit distance searched for a shortest script (its trace holds
/// about `MAX_EDITS²` integers: 32 MiB at 2000).
const MAX_EDITS: usize = 2000;

/// One step of an edit script, by line index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// `old[i]` equals `new[j]` and is kept.
    Keep(usize, usize),
    /// `old[i]` is removed.
    Remove(usize),
    /// `new[j]` is added.
    Add(usize),
}

/// A unified diff turning `old` into `new`, with `--- old_name` and
/// `+++ new_name` headers and hunks of three lines of context; the empty
/// string when the texts are equal.
pub fn unified(old: &str, new: &str, old_name: &str, new_name: &str) -> String {
    if old == new {
        return String::new();
    }
    let a: Vec<&str> = old.split_inclusive('\n').collect();
    let b: Vec<&str> = new.split_inclusive('\n').collect();
    let ops = edit_script(&a, &b, MAX_EDITS);
    let mut out = format!("--- {old_name}\n+++ {new_name}\n");
    for (start, end) in hunks(&ops) {
        write_hunk(&mut out, &ops[start..end], &a, &b);
    }
    out
}

/// The ops ranges `[start, end)` of each hunk: the changes with up to
/// `CONTEXT` kept lines around them, merged when their contexts touch.
fn hunks(ops: &[Op]) -> Vec<(usize, usize)> {
    let mut out: Vec<(usize, usize)> = Vec::new();
    let mut changes = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| !matches!(op, Op::Keep(..)))
        .map(|(i, _)| i);
    let Some(first) = changes.next() else {
        return out;
    };
    let mut start = first.saturating_sub(CONTEXT);
    let mut last = first;
    for i in changes {
        // Kept lines between two changes: up to twice the context joins them.
        if i - last - 1 > 2 * CONTEXT {
            out.push((start, (last + 1 + CONTEXT).min(ops.len())));
            start = i - CONTEXT;
        }
        last = i;
    }
    out.push((start, (last + 1 + CONTEXT).min(ops.len())));
    out
}

fn write_hunk(out: &mut String, ops: &[Op], a: &[&str], b: &[&str]) {
    // A hunk starts at the first line it names on each side. A side it
    // names no line of is empty (a hunk with context has lines on both
    // sides; one without covers every line of both texts): `diff` writes
    // its start as 0.
    let (mut old_at, mut new_at) = (None, None);
    let (mut old_count, mut new_count) = (0, 0);
    for op in ops {
        if let Op::Keep(i, _) | Op::Remove(i) = *op {
            old_at.get_or_insert(i);
            old_count += 1;
        }
        if let Op::Keep(_, j) | Op::Add(j) = *op {
            new_at.get_or_insert(j);
            new_count += 1;
        }
    }
    let old_start = old_at.map_or(0, |i| i + 1);
    let new_start = new_at.map_or(0, |j| j + 1);
    let _ = writeln!(
        out,
        "@@ -{old_start},{old_count} +{new_start},{new_count} @@"
    );
    for op in ops {
        let (sign, line) = match *op {
            Op::Keep(i, _) => (' ', a[i]),
            Op::Remove(i) => ('-', a[i]),
            Op::Add(j) => ('+', b[j]),
        };
        out.push(sign);
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
}

/// A shortest edit script from `a` to `b` when it needs at most
/// `max_edits` removals and additions, else one that removes and adds the
/// whole middle between the common prefix and suffix.
fn edit_script(a: &[&str], b: &[&str], max_edits: usize) -> Vec<Op> {
    let prefix = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let suffix = a[prefix..]
        .iter()
        .rev()
        .zip(b[prefix..].iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    let (a_mid, b_mid) = (&a[prefix..a.len() - suffix], &b[prefix..b.len() - suffix]);
    let mut ops: Vec<Op> = (0..prefix).map(|i| Op::Keep(i, i)).collect();
    match myers(a_mid, b_mid, max_edits) {
        Some(mid) => ops.extend(mid.into_iter().map(|op| match op {
            Op::Keep(i, j) => Op::Keep(i + prefix, j + prefix),
            Op::Remove(i) => Op::Remove(i + prefix),
            Op::Add(j) => Op::Add(j + prefix),
        })),
        None => {
            ops.extend((0..a_mid.len()).map(|i| Op::Remove(i + prefix)));
            ops.extend((0..b_mid.len()).map(|j| Op::Add(j + prefix)));
        }
    }
    let (a_end, b_end) = (a.len() - suffix, b.len() - suffix);
    ops.extend((0..suffix).map(|s| Op::Keep(a_end + s, b_end + s)));
    ops
}

/// Myers' greedy shortest edit script, or `None` past `max_edits`.
///
/// `trace[d][k + d]` is the furthest x reached on diagonal k (x − y)
/// with d edits; the script is read back from the end through it.
fn myers(a: &[&str], b: &[&str], max_edits: usize) -> Option<Vec<Op>> {
    let (n, m) = (a.len() as isize, b.len() as isize);
    let limit = (a.len() + b.len()).min(max_edits) as isize;
    let mut trace: Vec<Vec<isize>> = Vec::new();
    let mut found = None;
    'search: for d in 0..=limit {
        let prev = trace.last();
        let mut v = vec![0isize; (2 * d + 1) as usize];
        for k in (-d..=d).step_by(2) {
            // Down from diagonal k+1 (an add) or right from k-1 (a remove).
            let mut x = match prev {
                None => 0,
                Some(p) => {
                    let at = |k: isize| p[(k + d - 1) as usize];
                    if k == -d || (k != d && at(k - 1) < at(k + 1)) {
                        at(k + 1)
                    } else {
                        at(k - 1) + 1
                    }
                }
            };
            let mut y = x - k;
            while x < n && y < m && a[x as usize] == b[y as usize] {
                x += 1;
                y += 1;
            }
            v[(k + d) as usize] = x;
            if x >= n && y >= m {
                trace.push(v);
                found = Some(d);
                break 'search;
            }
        }
        trace.push(v);
    }
    let edits = found?;
    let mut ops = Vec::with_capacity((n + m) as usize);
    let (mut x, mut y) = (n, m);
    for d in (1..=edits).rev() {
        let p = &trace[(d - 1) as usize];
        let at = |k: isize| p[(k + d - 1) as usize];
        let k = x - y;
        let prev_k = if k == -d || (k != d && at(k - 1) < at(k + 1)) {
            k + 1
        } else {
            k - 1
        };
        let prev_x = at(prev_k);
        let prev_y = prev_x - prev_k;
        // The point right after the edit; from there a snake of kept
        // lines runs along diagonal k to (x, y).
        let (mid_x, edit) = if prev_k == k + 1 {
            (prev_x, Op::Add(prev_y as usize))
        } else {
            (prev_x + 1, Op::Remove(prev_x as usize))
        };
        while x > mid_x {
            x -= 1;
            y -= 1;
            ops.push(Op::Keep(x as usize, y as usize));
        }
        ops.push(edit);
        (x, y) = (prev_x, prev_y);
    }
    while x > 0 && y > 0 {
        x -= 1;
        y -= 1;
        ops.push(Op::Keep(x as usize, y as usize));
    }
    debug_assert_eq!((x, y), (0, 0));
    ops.reverse();
    Some(ops)
}

#[cfg(test)]
mod tests;
